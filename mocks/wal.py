"""The database's write-ahead log: a connection opened in WAL mode while other processes may be
opening the same file, and the WAL copied back into the database from a thread of its own."""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.background import OncePerKind
from mpesa_atm.mocks.coordination import Backoff, WriterLock

__all__ = ["Checkpointer", "connect", "while_locked"]


def while_locked(action: Callable[[], Any], timeout: float) -> None:
    """Runs `action`, again as Backoff says for up to `timeout` while SQLite answers "database is
    locked" (then that error).

    Processes opening a new file at once (the workers of `uvicorn --workers N`) race to make it a WAL
    database, and the loser can be told "locked" at once, without SQLite's busy handler waiting."""
    pauses = Backoff(timeout).pauses()
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            pause = next(pauses, None)
            if pause is None:
                raise
        time.sleep(pause)


def connect(path: str, timeout: float) -> sqlite3.Connection:
    """A connection to `path` in WAL mode, in autocommit mode: transactions are opened explicitly with
    BEGIN IMMEDIATE. SQLite's busy handler waits up to `timeout` seconds for another writer."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        if path != ":memory:":
            while_locked(lambda: db.execute("PRAGMA journal_mode = WAL"), timeout)
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the OS's hands);
        # only a power cut may lose the last commits.
        db.execute("PRAGMA synchronous = NORMAL")
        # The writer that starts the WAL over cuts the file back to this: a long write (a reset, a
        # seeding) leaves no high-water mark on disk.
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    except BaseException:
        db.close()
        raise
    return db


# WAL pages a checkpoint pass may leave behind for the last pass, the one that holds writers off.
_CAUGHT_UP = 32
# WAL pages (4 KiB) past which the WAL is started over: small enough that the file stays a few MB
# under constant writes, at no cost measured (benchmarks/README.md, "Figures behind the code").
_RESTART_AT = 1024
# The bytes a WAL file longer than this is cut back to when it is started over: a long write (a reset,
# a seeding) leaves no high-water mark on disk. Well above the 4.2 MB of _RESTART_AT pages, so that
# the file is reused, not shrunk and regrown, at each restart, which cost the calls throughput and
# p99 (benchmarks/README.md, "Figures behind the code").
WAL_SIZE_LIMIT = 16 << 20


class Checkpointer:
    """Copies the WAL back into the database every `every` commits, from a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages and stalls that
    worker for the copy and two fsyncs. Here the copy runs beside the writers (PASSIVE). But a WAL
    is only started over when a checkpoint caught up with it whole, which writers adding pages
    meanwhile prevent: so once it is long (_RESTART_AT), a last pass runs with writers held off by
    the lock file. The database's connections leave checkpoints to it (wal_autocheckpoint = 0).
    """

    def __init__(self, path: str, timeout: float, every: int = 200) -> None:
        self.path = path
        self.timeout = timeout
        self.every = every
        self.commits = 0
        self.passes = 0  # wake-ups the thread has acted on (a test waits for them)
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.errors = OncePerKind(f"the WAL's checkpoint of {path}", traceback=False)  # the disk's trouble

    def committed(self) -> None:
        self.commits += 1
        if self.commits % self.every:
            return
        if self._thread is None:  # started on first need: most test stores never write this much
            self._thread = threading.Thread(target=self._run, name="mpesa-atm-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        # Its own lock file descriptor: flock excludes other descriptors, this process's too.
        lock = WriterLock(self.path, self.timeout)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    self._pass(lock)
                except StoreBusy:
                    pass  # writers kept the lock past the busy timeout: the next pass tries again
                except sqlite3.OperationalError as exc:
                    if not _busy(exc):
                        self.errors.log(exc)
                except sqlite3.Error as exc:
                    self.errors.log(exc)
                self.passes += 1
        finally:
            lock.close()

    def _pass(self, lock: WriterLock) -> None:
        """One pass on a connection of its own, closed after it (one every `every` commits): kept
        open, one opened while the files could not be written (immutable, say) would stay
        read-only, and hold the process's other connections to the file read-only with it (they
        share its -shm mapping), so that the store could not heal."""
        # mode=rw: a file deleted under the mock is not made anew here (mocks/store.py refuses it)
        uri = f"file:{urllib.parse.quote(self.path)}?mode=rw"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            self._checkpoint(db, lock)
        finally:
            db.close()

    @staticmethod
    def _checkpoint(db: sqlite3.Connection, lock: WriterLock) -> None:
        # Passes beside the writers while they add more than a few pages during a pass...
        for _ in range(4):
            _, wal_pages, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_pages - copied <= _CAUGHT_UP:
                break
        # ...and, once the WAL is long, a last one with writers held off (for the copy of those few
        # pages and two fsyncs), after which the next writer starts it over.
        if wal_pages > _RESTART_AT:
            with lock:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def stop(self) -> None:
        """Ends the thread after the pass under way, if any: its connection and lock file are closed
        when this returns (a store closed is closed whole)."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()


def _busy(error: sqlite3.OperationalError) -> bool:
    """Whether SQLite said another connection had the database: the next pass tries again."""
    return "locked" in str(error) or "busy" in str(error)
