"""Writes batched per turn of the event loop: what a worker queues in one turn (Store.in_next_write,
Store.journal_in_next_write) is written after that turn, the rules' work in one transaction and the
journal entries in one append, so that calls ending their turn together share a lock turn and a
COMMIT.

Neither waits on the event loop for another process's turn: when a lock is taken, the write waits
for its turn as coordination.Backoff says, from the loop's sleeps, and the worker answers its other
calls meanwhile (those that write wait for their turn; a refused request, the control API's
health, a call the fast path refuses are answered at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mpesa_atm.errors import StoreError
from mpesa_atm.mocks.coordination import Lock, Unlocked
from mpesa_atm.mocks.records import JournalRecord

if TYPE_CHECKING:
    from mpesa_atm.mocks.statements import Transaction

__all__ = ["Flush", "Outcome", "TurnQueue", "TurnWrites", "settle"]

T = TypeVar("T")
Item = TypeVar("Item")
Outcome = tuple[Any, BaseException | None]
Flush = Callable[[list[Item]], "list[Outcome] | asyncio.Future[list[Outcome]]"]


class TurnQueue(Generic[Item]):
    """What one worker queued in a turn of its event loop for one kind of write, handed after the
    turn to `flush` in a turn on `lock`; each item's future gets its outcome.

    `flush` gets the items and gives each one's outcome (value, exception), or a future of them
    (pg_store: written in its threads, with no lock to hold, so that the batches of later turns do
    not wait for it: the database orders them)."""

    def __init__(self, flush: Flush[Item], lock: Lock | None = None) -> None:
        self._flush = flush
        self._lock: Lock = lock if lock is not None else Unlocked()
        self._items: list[tuple[Item, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._waiting: set[asyncio.Task[None]] = set()  # writes waiting for their turn on the lock

    def add(self, item: Item) -> asyncio.Future[Any]:
        """`item` queued for the write after this turn; its future gets its outcome. A store's writes
        are queued from one event loop, the worker's (the app's lifespan opens and closes it)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._items.append((item, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._run, loop)
        return done

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """After the turn: the write, or a wait for the lock when another process has it."""
        try:
            taken = self._lock.try_acquire()
        except StoreError as exc:  # the store was closed meanwhile
            self._fail(exc)
            return
        if not taken:
            waiting = loop.create_task(self._write_in_turn())
            self._waiting.add(waiting)
            waiting.add_done_callback(self._waiting.discard)
            return
        try:
            self._write()
        finally:
            self._lock.release()

    async def _write_in_turn(self) -> None:
        try:
            async with self._lock.turn():
                self._write()
        except StoreError as exc:  # StoreBusy past the busy timeout, or the store closed meanwhile
            self._fail(exc)

    def _take(self) -> list[tuple[Item, asyncio.Future[Any]]]:
        batch, self._items = self._items, []
        self._scheduled = False
        return batch

    def _write(self) -> None:
        batch = self._take()
        if not batch:
            return
        try:
            outcomes = self._flush([item for item, _ in batch])
        except Exception as exc:  # a bug of `flush`: its futures are told, none left waiting
            settle(batch, [(None, exc)] * len(batch))
            raise
        if isinstance(outcomes, list):
            settle(batch, outcomes)
            return

        def settled(finished: asyncio.Future[list[Outcome]]) -> None:
            error = None if finished.cancelled() else finished.exception()
            if finished.cancelled() or error is not None:
                settle(batch, [(None, error or StoreError("the write was cancelled"))] * len(batch))
            else:
                settle(batch, finished.result())

        outcomes.add_done_callback(settled)

    def _fail(self, error: BaseException) -> None:
        batch = self._take()
        settle(batch, [(None, error)] * len(batch))


def settle(batch: list[tuple[Any, asyncio.Future[Any]]], outcomes: list[Outcome]) -> None:
    """Gives each future of `batch` its outcome (value, exception), unless it is done already."""
    for (_, done), (value, error) in zip(batch, outcomes, strict=True):
        if done.done():
            continue
        with contextlib.suppress(RuntimeError):  # its event loop was closed meanwhile
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)


class TurnWrites:
    """The writes one store queued in a turn of the event loop, made after it: through
    `transaction` (one write transaction on `db`, in a turn on `database_lock`) and `append` (to
    the journal, in a turn on `journal_lock`). The two queues take their turns apart."""

    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        transaction: Callable[[], AbstractContextManager[Transaction]],
        append: Callable[[Sequence[JournalRecord]], None],
        *,
        database_lock: Lock | None = None,
        journal_lock: Lock | None = None,
    ) -> None:
        self.db = db  # the store's connection now: it may open a new one (mocks/store.py)
        self._transaction = transaction
        self._append = append
        self._works: TurnQueue[Callable[[Transaction], Any]] = TurnQueue(self._run_works, database_lock)
        self._journal: TurnQueue[JournalRecord] = TurnQueue(self._run_journal, journal_lock)

    def add(self, work: Callable[[Transaction], T]) -> asyncio.Future[T]:
        return self._works.add(work)

    def add_journal(self, record: JournalRecord) -> asyncio.Future[None]:
        return self._journal.add(record)

    def _run_works(self, works: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        """Every work in one transaction. Tried first without savepoints (each costs two statements
        a work); when a work raises, that transaction is rolled back and the turn's works run again,
        each in a savepoint, so that the one that raises is undone alone and its exception goes to
        its future alone. A work is a function of the database, so running it again is safe."""
        failed: list[bool] = []

        def first_try(tx: Transaction, work: Callable[[Transaction], Any]) -> Any:
            try:
                return work(tx)
            except sqlite3.OperationalError:  # the store's trouble (a full disk), not the work's
                raise
            except Exception:
                failed.append(True)
                raise

        try:
            with self._transaction() as tx:
                return [(first_try(tx, work), None) for work in works]
        except Exception as exc:  # StoreBusy, a failed COMMIT, or a work raised: nothing written
            if not failed or len(works) == 1:
                return [(None, exc)] * len(works)
        try:
            with self._transaction() as tx:
                return [self._in_savepoint(tx, work) for work in works]
        except Exception as exc:
            return [(None, exc)] * len(works)

    def _in_savepoint(self, tx: Transaction, work: Callable[[Transaction], Any]) -> Outcome:
        db = self.db()
        db.execute("SAVEPOINT work")
        try:
            value = work(tx)
        except sqlite3.OperationalError:  # the store's trouble: the whole turn fails (StoreBusy)
            raise
        except Exception as exc:
            db.execute("ROLLBACK TO work")
            db.execute("RELEASE work")
            return None, exc
        db.execute("RELEASE work")
        return value, None

    def _run_journal(self, records: list[JournalRecord]) -> list[Outcome]:
        try:  # one write to each role's file for the entries of the turn
            self._append(records)
        except Exception as exc:  # StoreBusy, OSError, a closed store: to the futures, none left waiting
            return [(None, exc)] * len(records)
        return [(None, None)] * len(records)
