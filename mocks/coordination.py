"""How the processes on one database take turns and share counters: lock files beside it, and
counters in the first bytes of `<db>.lock`, which every process maps.

Writers take turns on `<db>.lock` (each write transaction) and `<db>.journal.lock` (each append to
the journal). Without fcntl (Windows) or for a database in memory there are no lock files: SQLite's
own locking alone, and the counters are this process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from mpesa_atm.errors import StoreBusy

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_VERSION",
    "IN_FLIGHT",
    "JOURNAL_FILES",
    "LAST_JOURNAL_ID",
    "PAUSE_SECONDS",
    "SPIN_SECONDS",
    "Backoff",
    "Coordination",
    "Lock",
    "SharedCounters",
    "Unlocked",
    "WriterLock",
]

# Slots of SharedCounters, each changed only in a turn on the lock that guards it.
CONFIG_VERSION = 0  # `.lock`: changes to fault rules and modes (Store.config_version)
LAST_JOURNAL_ID = 1  # `.journal.lock`: the last id the journal gave
JOURNAL_FILES = 2  # `.journal.lock`: from here, per role, its current file's generation and lines
IN_FLIGHT = 6  # `.lock`: from here, per role (bank, ipg), its calls under way in all its workers


# The one retry policy of every wait for a turn (Backoff).
SPIN_SECONDS = 2e-3  # tried again at once this long (another process's turn is shorter)...
PAUSE_SECONDS = 1e-3  # ...then after pauses this long, until the busy timeout


@dataclass(frozen=True)
class Backoff:
    """How every writer waits for its turn, in a thread or on the event loop: tried again at once
    for SPIN_SECONDS (on the event loop, at its next turn, after its other work), then every
    PAUSE_SECONDS, until `timeout` after the first try failed.

    SQLite's busy handler, when BEGIN IMMEDIATE finds another writer, sleeps 1, 2, 5, 10... ms, so
    two busy workers spend much of their time asleep; a turn polled for in this way starts soon
    after the other's ends. Not shorter pauses than PAUSE_SECONDS: uvloop's timers count in
    milliseconds, so a shorter one runs at once (benchmarks/README.md, "Figures behind the code")."""

    timeout: float

    def pauses(self) -> Iterator[float]:
        """The pause before each next try, from the first failed one; none once `timeout` passed."""
        start = time.monotonic()
        while (waited := time.monotonic() - start) < self.timeout:
            yield 0.0 if waited < SPIN_SECONDS else PAUSE_SECONDS


class Lock(Protocol):
    """A turn to write: a WriterLock, or Unlocked when no other process can write."""

    timeout: float

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def turn(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    def __enter__(self) -> None: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...


class SharedCounters:
    """8-byte counters in memory that the processes on one database share (the lock file, mapped),
    or this process's own; each is changed only in a turn on the lock that guards it."""

    SIZE = 8 * 8

    def __init__(self, memory: Any = None) -> None:
        self.memory = memory if memory is not None else bytearray(self.SIZE)

    def __getitem__(self, slot: int) -> int:
        return int.from_bytes(self.memory[slot * 8 : slot * 8 + 8], "little")

    def __setitem__(self, slot: int, value: int) -> None:
        self.memory[slot * 8 : slot * 8 + 8] = value.to_bytes(8, "little")


class WriterLock:
    """An exclusive flock on `<database><suffix>`, held for one turn: `with lock:` (a thread, the
    control API), `async with lock.turn():` (a call's work) or `try_acquire` (turns.py). Both waits
    follow Backoff: `acquire` waits in `time.sleep` and so blocks its thread; `turn()` in the
    event loop's sleeps, which leave the loop free for the other calls meanwhile."""

    def __init__(self, path: str, timeout: float, suffix: str = ".lock") -> None:
        self.path = path + suffix
        self.timeout = timeout
        self.backoff = Backoff(timeout)
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> None:
        """Waits for the lock; StoreBusy when another holder kept it past the timeout."""
        pauses = self.backoff.pauses()
        while not self.try_acquire():
            time.sleep(self._next(pauses))

    def try_acquire(self) -> bool:
        """Takes the lock if no other holder has it, without waiting."""
        assert fcntl is not None
        if self.fd is None:
            raise StoreBusy(f"{self.path} is closed: the store was closed")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """The lock for the block, awaited in the event loop's sleeps (StoreBusy past the timeout)."""
        pauses = self.backoff.pauses()
        while not self.try_acquire():
            await asyncio.sleep(self._next(pauses))
        try:
            yield
        finally:
            self.release()

    def _next(self, pauses: Iterator[float]) -> float:
        """The pause before the next try; StoreBusy once the timeout has passed."""
        pause = next(pauses, None)
        if pause is None:
            raise StoreBusy(f"another writer held {self.path} for {self.timeout:g} s")
        return pause

    def release(self) -> None:
        assert fcntl is not None and self.fd is not None
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def shared_memory(self, size: int) -> mmap.mmap:
        """The lock file's first `size` bytes, mapped: memory all processes see, changed under the lock."""
        assert self.fd is not None
        if os.fstat(self.fd).st_size < size:
            # Allocated, not sparse (ftruncate): a page of the mapping written with no block behind
            # it on a full disk is SIGBUS for the worker, where this is one ENOSPC at start
            # (StoreBusy). Another process doing the same at once: same size, no harm.
            try:
                os.posix_fallocate(self.fd, 0, size)
            except OSError as exc:
                raise StoreBusy(f"cannot allocate {self.path}: {exc}") from exc
        return mmap.mmap(self.fd, size)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock too
            self.fd = None


class Unlocked:
    """The turn of a process that has no lock file to take turns on: it writes at once."""

    timeout = 0.0

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        yield

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        return None


class Coordination:
    """The lock files of one database and the counters its processes share, open until close().

    `database` guards the write transactions and CONFIG_VERSION; `journal` the journal's files and
    counters. The journal's appends take turns of their own: they need not wait for transactions.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.database: WriterLock | Unlocked = Unlocked()
        self.journal: WriterLock | Unlocked = Unlocked()
        self._mapping: mmap.mmap | None = None
        if path != ":memory:" and fcntl is not None:
            self.database = WriterLock(path, timeout)
            try:
                self.journal = WriterLock(path, timeout, ".journal.lock")
                self._mapping = self.database.shared_memory(SharedCounters.SIZE)
            except BaseException:
                self.close()
                raise
        self.counters = SharedCounters(self._mapping)

    async def enter(self, slot: int, limit: int) -> bool:
        """Counts one more call under way in `slot`, unless `limit` already are (then False)."""
        async with self.database.turn():
            count = self.counters[slot]
            if count >= limit:
                return False
            self.counters[slot] = count + 1
        return True

    async def leave(self, slot: int) -> None:
        """Counts one call under way in `slot` fewer; never below 0, as after a clear()."""
        async with self.database.turn():
            self.counters[slot] = max(self.counters[slot] - 1, 0)

    def clear(self, slot: int) -> None:
        """Forgets the calls counted in `slot`, those of a killed worker with them."""
        with self.database:
            self.counters[slot] = 0

    @property
    def shared(self) -> bool:
        """Whether there are lock files: other processes may write to the same database."""
        return isinstance(self.database, WriterLock)

    def close(self) -> None:
        if self._mapping is not None:
            self.counters = SharedCounters()  # the mapping goes: no reader may keep using it
            self._mapping.close()
            self._mapping = None
        for lock in (self.database, self.journal):
            if isinstance(lock, WriterLock):
                lock.close()
