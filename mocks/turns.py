"""Writes batched per turn of the event loop: what a worker queues in one turn (Store.in_next_write,
Store.journal_in_next_write) is written after that turn, the rules' work in one transaction and the
journal entries in one append, so that calls ending their turn together share a lock turn and a
COMMIT.

Neither waits on the event loop for another process's turn: when a lock is taken, the write is
tried again at each turn of the loop for SPIN_SECONDS (another worker's turn is a few hundred
microseconds at most), then every millisecond until the busy timeout, and the worker answers its
other calls meanwhile (those that write wait for their turn; a refused request, the control API's
health, a call the fast path refuses are answered at once). Trying again from timers of 50 us
doubling to 1 ms, as the blocking wait did, made a contended turn wait a whole millisecond: uvloop's
timers count in milliseconds, so the short pauses ran at once and the next one was 1 ms (bank mock,
2 workers, 4 runs each in turn with other load on the machine: 7.3-9.2k calls a second and p99
12-74 ms before, 7.6-11.2k and 3.2-8.2 ms after; benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.journal import JournalRecord

if TYPE_CHECKING:
    from mpesa_atm.mocks.store import Transaction

__all__ = ["SPIN_SECONDS", "Outcome", "TurnWrites", "settle"]

SPIN_SECONDS = 2e-3  # a write tries again at each turn of the loop this long, then every 1 ms

T = TypeVar("T")
Item = TypeVar("Item")
Outcome = tuple[Any, BaseException | None]


class Lock(Protocol):
    timeout: float

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


class _Queue(Generic[Item]):
    """What one turn queued for one kind of write, flushed after the turn under `lock`: `flush`
    gets the items and gives each one's outcome (value, exception)."""

    def __init__(
        self, lock: Lock | None, timeout: float, flush: Callable[[list[Item]], list[Outcome]]
    ) -> None:
        self.lock = lock  # None: no lock file (one process): written at once
        self.timeout = timeout
        self.flush = flush
        self.items: list[tuple[Item, asyncio.Future[Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._deadline = 0.0
        self._spin_until = 0.0

    def add(self, item: Item) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self.items and self._loop is not loop:  # left by a loop that is gone (tests): now
            self._write(self._take(), wait=True)
            self._scheduled = False
        done: asyncio.Future[Any] = loop.create_future()
        self.items.append((item, done))
        if not self._scheduled:
            self._scheduled = True
            self._loop = loop
            loop.call_soon(self.run)
        return done

    def run(self) -> None:
        """After the turn: the write, or another try soon when another process has the lock."""
        try:
            taken = self.lock is None or self.lock.try_acquire()
        except Exception as exc:  # the store was closed meanwhile
            batch = self._take()
            settle(batch, [(None, exc)] * len(batch))
            return
        if not taken:
            now = time.monotonic()
            if not self._deadline:
                self._deadline = now + self.timeout
                self._spin_until = now + SPIN_SECONDS
            if now < self._deadline and self._loop is not None and not self._loop.is_closed():
                if now < self._spin_until:  # the next turn of the loop, after its other work
                    self._loop.call_soon(self.run)
                else:
                    self._loop.call_later(1e-3, self.run)
                return
            busy = StoreBusy(f"another writer held the lock for {self.timeout:g} s")
            batch = self._take()
            settle(batch, [(None, busy)] * len(batch))
            return
        batch = self._take()
        try:
            self._write(batch, wait=False)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _take(self) -> list[tuple[Item, asyncio.Future[Any]]]:
        batch, self.items = self.items, []
        self._scheduled = False
        self._deadline = 0.0
        return batch

    def _write(self, batch: list[tuple[Item, asyncio.Future[Any]]], *, wait: bool) -> None:
        if wait and self.lock is not None:  # outside the event loop's turn: a blocking wait is all
            with _blocking(self.lock):
                outcomes = self.flush([item for item, _ in batch])
        else:
            outcomes = self.flush([item for item, _ in batch])
        settle(batch, outcomes)


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


@contextlib.contextmanager
def _blocking(lock: Lock) -> Any:
    deadline = time.monotonic() + lock.timeout
    while not lock.try_acquire():
        if time.monotonic() >= deadline:
            raise StoreBusy(f"another writer held the lock for {lock.timeout:g} s")
        time.sleep(1e-3)
    try:
        yield
    finally:
        lock.release()


class TurnWrites:
    """The writes one store queued in a turn of the event loop, made after it: through
    `transaction` (one write transaction on `db`, in a turn on `database_lock`) and `append` (to
    the journal, in a turn on `journal_lock`). The two queues take their turns apart."""

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[Transaction]],
        append: Callable[[Sequence[JournalRecord]], None],
        *,
        database_lock: Lock | None = None,
        journal_lock: Lock | None = None,
    ) -> None:
        self.db = db
        self._transaction = transaction
        self._append = append
        timeout = database_lock.timeout if database_lock is not None else 5.0
        self._works: _Queue[Callable[[Transaction], Any]] = _Queue(database_lock, timeout, self._run_works)
        self._journal: _Queue[JournalRecord] = _Queue(journal_lock, timeout, self._run_journal)

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

    def _run_journal(self, records: list[JournalRecord]) -> list[Outcome]:
        try:  # one write to each role's file for the entries of the turn
            self._append(records)
        except Exception as exc:  # StoreBusy, OSError, a closed store: to the futures, none left waiting
            return [(None, exc)] * len(records)
        return [(None, None)] * len(records)
