"""Writes batched per turn of the event loop: what a worker queues in one turn (Store.in_next_write,
Store.journal_in_next_write) is written after that turn, the rules' work in one transaction and the
journal entries in one append, so that calls ending their turn together share a lock turn and a
COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from mpesa_atm.mocks.journal import JournalRecord

if TYPE_CHECKING:
    from mpesa_atm.mocks.store import Transaction

__all__ = ["TurnWrites"]

T = TypeVar("T")


class TurnWrites:
    """The writes one store queued in a turn of the event loop, made after it: through
    `transaction` (one write transaction on `db`) and `append` (to the journal)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[Transaction]],
        append: Callable[[Sequence[JournalRecord]], None],
    ) -> None:
        self.db = db
        self._transaction = transaction
        self._append = append
        self.pending: list[tuple[Callable[[Transaction], Any], asyncio.Future[Any]]] = []
        self.journal: list[tuple[JournalRecord, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, work: Callable[[Transaction], T]) -> asyncio.Future[T]:
        done: asyncio.Future[T] = self._future()
        self.pending.append((work, done))
        return done

    def add_journal(self, record: JournalRecord) -> asyncio.Future[None]:
        done: asyncio.Future[None] = self._future()
        self.journal.append((record, done))
        return done

    def _future(self) -> asyncio.Future[Any]:
        """A future of the next write, which this schedules if nothing has yet in this turn."""
        loop = asyncio.get_running_loop()
        if (self.pending or self.journal) and self._loop is not loop:  # their loop is gone
            self.write()
        if not (self.pending or self.journal):
            self._loop = loop
            loop.call_soon(self.write)
        return loop.create_future()

    def _run(
        self, tx: Transaction, work: Callable[[Transaction], Any], *, alone: bool
    ) -> tuple[Any, BaseException | None]:
        """`work`'s value or exception. In a savepoint, so that one that raises is undone alone,
        unless it is `alone` in the transaction: then it raises, and the ROLLBACK undoes it."""
        if alone:
            return work(tx), None
        db = self.db
        db.execute("SAVEPOINT work")
        try:
            value = work(tx)
        except Exception as exc:
            db.execute("ROLLBACK TO work")
            db.execute("RELEASE work")
            return None, exc
        db.execute("RELEASE work")
        return value, None

    def write(self) -> None:
        batch, self.pending = self.pending, []
        journal, self.journal = self.journal, []
        if not (batch or journal):
            return
        outcomes: list[tuple[Any, BaseException | None]] = []
        journalled: BaseException | None = None
        if batch:
            try:
                with self._transaction() as tx:
                    outcomes = [self._run(tx, work, alone=len(batch) == 1) for work, _ in batch]
            except Exception as exc:  # StoreBusy, a failed COMMIT, or the one work raised: nothing written
                outcomes = [(None, exc)] * len(batch)
        if journal:  # one write to each role's file for the entries of the turn
            try:
                self._append([r for r, _ in journal])
            except Exception as exc:  # StoreBusy, OSError, a closed store: to the futures, none left waiting
                journalled = exc
        futures = [done for _, done in batch] + [done for _, done in journal]
        results = outcomes + [(None, journalled)] * len(journal)
        for done, (value, error) in zip(futures, results, strict=True):
            if done.done():
                continue
            with contextlib.suppress(RuntimeError):  # its event loop was closed meanwhile
                if error is None:
                    done.set_result(value)
                else:
                    done.set_exception(error)
