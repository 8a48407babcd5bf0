"""The mocks' state: one SQLite file in WAL mode that every worker of both roles shares, its tables
and the transactions on them.

Uniqueness is the database's job (primary keys and UNIQUE constraints, one writer at a time through
BEGIN IMMEDIATE), so it holds across worker processes. A write is committed before its answer is
sent; the writes a worker queues in one turn of its event loop share one transaction
(mocks/turns.py). Writers take turns on a lock file beside the database, which also holds the
counters every worker reads without a query (mocks/coordination.py), and the WAL is copied back
from a thread of its own (mocks/wal.py), so that no request sleeps in SQLite's busy handler or
waits for a checkpoint's fsync. The request journal is in files of its own (mocks/journal.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.background import OncePerKind
from mpesa_atm.mocks.coordination import CONFIG_VERSION, IN_FLIGHT, Coordination, WriterLock
from mpesa_atm.mocks.journal import Journal
from mpesa_atm.mocks.records import ROLE_TABLES, JournalEntry, JournalRecord, Kept
from mpesa_atm.mocks.sqlite_tables import SCHEMA, SQLITE
from mpesa_atm.mocks.statements import Transaction, kept
from mpesa_atm.mocks.turns import TurnWrites
from mpesa_atm.mocks.wal import Checkpointer, connect, while_locked

__all__ = ["SQLITE", "Store"]

_SQL = SQLITE.statements

T = TypeVar("T")

# A store in trouble opens its connection anew, or probes whether it can write, at most this often.
_HEAL_SECONDS = 1.0
# SQLite's errors that a connection opened anew may cure: files that were not writable or could not
# be opened when it was opened (a connection opened read-only stays so), or failed reads or writes.
_REOPEN_CURES = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")

log = logging.getLogger("mpesa_atm.mocks")


def _create_private(path: str) -> None:
    """Creates the database file 0600 if it is not there: SQLite gives its -wal and -shm files the
    database's mode, and the store holds every call's details (the lock files and journal are 0600)."""
    if path != ":memory:" and not path.startswith("file:"):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class Store:
    """One connection to the shared SQLite file; each worker process opens its own, and closes it
    with close() (an app's lifespan does: mocks/app.py).

    The methods of mocks/storage.Storage run at once, on the event loop, whose thread the connection
    belongs to: a read of the local file does not wait for the writers (WAL); a call's write waits
    for its turn on the lock file from the loop's timers (in_next_write, mocks/turns.py), and the
    control API's own writes take their turn blocking (_write_lock)."""

    def __init__(
        self,
        path: str,
        *,
        journal_limit: int = 10_000,
        busy_timeout: float = 5.0,
        open_later: bool = False,
    ) -> None:
        """`busy_timeout`: seconds a write waits for another process's turn before StoreBusy.
        `open_later` (a mock's worker): a database that cannot be opened now is logged, and opened
        at a later use (StoreBusy meanwhile), rather than failing the worker's start, which would
        stop every worker of the mock (uvicorn ends its parent when one fails at start)."""
        self.path = path
        self._busy_timeout = busy_timeout
        self._troubles = OncePerKind(f"writing to {path}", traceback=False)
        self._journal_troubles = OncePerKind(f"the journal of {path}", traceback=False)
        self.journal_lost = 0  # entries the journal could not take since it last took one (counted, logged)
        # The worker's own view of the store's health (health(), docs/reliability.md): set by the
        # error paths, cleared by the next success, so that asking costs no write.
        self._trouble: str | None = None  # the last write's failure, until one succeeds
        self._journal_trouble: str | None = None  # the last append's failure, until one succeeds
        # Why the connection must be opened anew (none, or SQLite opened the files read-only, or a
        # write failed in a way a new connection may cure): tried at the next use, once a second.
        self._reopen: str | None = None
        self._next_try = 0.0  # time.monotonic() before which neither a reopen nor a probe is tried
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # the database file's (st_dev, st_ino) when opened
        self._locks = Coordination(path, busy_timeout)
        try:
            self._open()
        except (OSError, sqlite3.Error, StoreBusy) as exc:
            if not open_later:
                self._locks.close()
                raise
            self._reopen = str(exc) if isinstance(exc, StoreBusy) else f"cannot open {path}: {exc}"
            self._next_try = time.monotonic() + _HEAL_SECONDS
            self._troubles.log(StoreBusy(self._reopen))
        self._checkpointer: Checkpointer | None = None
        if self._locks.shared:  # else SQLite's own locking and checkpoints
            self._checkpointer = Checkpointer(path, busy_timeout)
        self._journal = Journal(path, journal_limit, self._locks.counters)
        self._turn_writes = TurnWrites(
            self._in_transaction,
            lambda: self.transaction(held=True),
            lambda records: self._append(records, held=True),
            database_lock=self._locks.database if isinstance(self._locks.database, WriterLock) else None,
            journal_lock=self._locks.journal if isinstance(self._locks.journal, WriterLock) else None,
        )

    def _open(self) -> None:
        """Opens the connection, closing the old one first, and notes the file it opened; `_reopen`
        says why not yet writable when SQLite could open the files only read-only (it does so
        silently, and such a connection stays read-only whatever becomes of the files).

        The old connection goes first: a process's connections to one file share its -shm mapping
        (SQLite's unix VFS), so a new one opened beside a read-only one would be read-only too.
        A worker serves the file it first opened, or none: StoreBusy when another is at the path
        (a new store would start beside the old one's -wal, which other workers have open)."""
        path = self.path
        no_file = path == ":memory:" or path.startswith("file:")  # (a URI: not a path to stat)
        gone = self._file_trouble()
        if gone is not None:
            raise StoreBusy(gone)
        if self._db is not None:
            self._db.close()
            self._db = None
        if not no_file and not os.path.exists(path):
            if os.path.exists(f"{path}-wal"):  # a worker started after the file was deleted
                raise StoreBusy(
                    f"the database file {path} was deleted, and its -wal is still there: put the file"
                    f" back, or remove {path}-wal and {path}-shm to start afresh"
                )
            # Only a missing file: an os.close() of the database beside open connections of this
            # process would drop their POSIX locks on it (SQLite's own connections take care).
            _create_private(path)
        unwritable = None if no_file else _unwritable(path)
        db = connect(path, self._busy_timeout)
        try:
            while_locked(lambda: db.executescript(SCHEMA), self._busy_timeout)  # idempotent; commits
            if self._locks.shared:
                db.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer's job
            identity = None if no_file else _identity(os.stat(path))
        except BaseException:
            db.close()
            raise
        self._db = db
        if self._identity is None:  # else the same file (checked above)
            self._identity = identity
        self._reopen = unwritable
        if unwritable is not None:
            self._next_try = time.monotonic() + _HEAL_SECONDS
            self._troubles.log(StoreBusy(unwritable))

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened anew first when it is due (at most once a second); StoreBusy when
        there is none. Called on the event loop, between transactions."""
        if self._reopen is not None and time.monotonic() >= self._next_try and self.path != ":memory:":
            self._next_try = time.monotonic() + _HEAL_SECONDS
            try:
                self._open()
            except StoreBusy as exc:  # the file at the path is not this worker's to open
                self._reopen = str(exc)
                self._troubles.log(exc)
            except (OSError, sqlite3.Error) as exc:  # still not: the next use, a second on, tries again
                self._reopen = f"cannot open {self.path}: {exc}"
                self._troubles.log(StoreBusy(self._reopen))
        if self._db is None:
            raise StoreBusy(self._reopen or f"{self.path} is not open")
        return self._db

    def _in_transaction(self) -> sqlite3.Connection:
        """The connection of the transaction under way (opened anew only between transactions)."""
        assert self._db is not None, "no transaction without a connection"
        return self._db

    def _file_trouble(self) -> str | None:
        """Why the file at the path is not the one open (deleted, or replaced by another), or None:
        one os.stat, the same whatever a turn writes. Nothing is written into a file that is gone:
        its writes would vanish with it at the next start."""
        if self._identity is None:
            return None
        try:
            now = _identity(os.stat(self.path))
        except FileNotFoundError:
            return (
                f"the database file {self.path} was deleted while the mock ran: put it back, or stop"
                f" the mock and remove {self.path}-wal and {self.path}-shm to start afresh"
            )
        except OSError as exc:
            return f"the database file {self.path} cannot be found: {exc}"
        if now != self._identity:
            return (
                f"the database file {self.path} was replaced while the mock ran: put it back, or stop"
                f" the mock and remove {self.path}-wal and {self.path}-shm before it starts again"
            )
        return None

    def _check_file(self) -> None:
        """StoreBusy, told once, when the file at the path is not the one open."""
        gone = self._file_trouble()
        if gone is not None:
            self._troubles.log(StoreBusy(gone))
            raise StoreBusy(gone)

    async def health(self) -> str | None:
        """Why this worker cannot use the store now, or None. Cheap: an os.stat and the state the
        error paths left, so that it can be asked in a loop; while in trouble, at most once a
        second, the connection is opened anew if due, and a one-page write transaction (when no
        other process is writing) tells whether writing works again without waiting for a call."""
        gone = self._file_trouble()
        if gone is not None:
            return gone
        if self._trouble is not None or self._reopen is not None:
            with contextlib.suppress(StoreBusy):
                self._connection()
            if self._reopen is None and self._trouble is not None and time.monotonic() >= self._next_try:
                self._next_try = time.monotonic() + _HEAL_SECONDS
                self._probe()
        return self._reopen or self._trouble or self._journal_trouble

    def _probe(self) -> None:
        """A write transaction that changes one page (the header's user_version, to the value it
        has), if the writer lock is free now; its outcome sets or clears `_trouble` as any write's."""
        with contextlib.suppress(StoreBusy):  # the outcome is in `_trouble`; a closed store: none
            if not self._locks.database.try_acquire():
                return  # another process is writing: the calls' writes will tell
            try:
                with self._committed() as db:
                    (version,) = db.execute("PRAGMA user_version").fetchone()
                    db.execute(f"PRAGMA user_version = {int(version)}")
            finally:
                self._locks.database.release()

    def close(self) -> None:
        """Closes the connection, the journal's files and the lock files; again, does nothing."""
        if self._db is not None:
            self._db.close()
        self._journal.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._locks.close()

    async def config_version(self) -> int:
        """A number that changes whenever any process changes fault rules or modes in this file."""
        return self._locks.counters[CONFIG_VERSION]

    @contextlib.contextmanager
    def _write_lock(self, *, config: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, in this process's turn on the database's lock file (StoreBusy past
        the busy timeout; the wait blocks: the control API's writes, not a call's); `config`: it
        changes fault rules or modes (see config_version)."""
        with self._locks.database, self._committed(config=config) as db:
            yield db

    @contextlib.contextmanager
    def _committed(self, *, config: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed when the block ends without error; the caller holds this
        process's turn on the database's lock.

        Nothing is acknowledged in a file deleted or replaced under the mock (StoreBusy): checked
        before BEGIN and after COMMIT, once a transaction, which is once a turn for the calls; a
        transaction the file was deleted under is committed into a file that is gone, and its
        calls are answered -7 (not done) as the ones after it are."""
        self._check_file()
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                self._rolled_back(db)
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error:
                self._rolled_back(db)  # a COMMIT that failed (disk full) may leave the transaction open
                raise
        except sqlite3.OperationalError as exc:
            raise self._failed(exc) from exc
        self._check_file()
        self._trouble = self._reopen = None  # it writes: whatever failed before works again
        if self._troubles.seen:  # the spell of trouble is over: the next one is told anew
            log.warning("writing to the store succeeds again")
            self._troubles.seen.clear()
        if config:  # after the commit, so that whoever sees the new number reads the change
            self._locks.counters[CONFIG_VERSION] += 1
        if self._checkpointer is not None:
            self._checkpointer.committed()

    @staticmethod
    def _rolled_back(db: sqlite3.Connection) -> None:
        """Ends the transaction under way, if SQLite has not ended it itself (it rolls back on its own
        after some errors: SQLITE_FULL, SQLITE_IOERR)."""
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error that brought us here is the one told
                db.execute("ROLLBACK")

    def _failed(self, error: sqlite3.Error) -> StoreBusy:
        """The machine's trouble as StoreBusy (-7, 503 on the control API), as on PostgreSQL: another
        process's lock, a full disk (SQLITE_FULL), a file that cannot be written or opened
        (SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_IOERR). Logged once per kind, not once per call:
        a full disk fails every call until space is back. Health says it until a write succeeds;
        for the kinds a new connection may cure, the connection is opened anew at the next use."""
        if "locked" not in str(error) and "busy" not in str(error):  # else another process's turn
            self._troubles.log(error)
            self._trouble = str(error)
            name = getattr(error, "sqlite_errorname", "") or ""
            if name.startswith(_REOPEN_CURES) and self._reopen is None:
                self._reopen = str(error)
                self._next_try = max(self._next_try, time.monotonic() + _HEAL_SECONDS)
        return StoreBusy(str(error))

    def _read(self, query: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of a read outside a write transaction; the machine's trouble as StoreBusy, as a
        write's is (a file that cannot be opened or read)."""
        try:
            return self._connection().execute(query, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            raise self._failed(exc) from exc

    @contextlib.contextmanager
    def transaction(self, *, held: bool = False) -> Iterator[Transaction]:
        """One writer at a time across every process; committed when the block ends without error.
        `held`: the caller has taken this process's turn on the lock (turns.py)."""
        with contextlib.nullcontext() if held else self._locks.database, self._committed() as db:
            yield Transaction(db, SQLITE)

    async def write(self, work: Callable[[Transaction], T]) -> T:
        """`work` in a write transaction of its own, now, committed before this returns (the control
        API's writes: its turn on the lock is taken blocking)."""
        with self.transaction() as tx:
            return work(tx)

    async def in_next_write(self, work: Callable[[Transaction], T]) -> T:
        """Runs `work` in the write transaction that follows this turn of the event loop, shared
        with whatever else this store queued in the turn; the future is done after the COMMIT.

        Calls that end their turn together share one BEGIN, lock turn and COMMIT. When there are
        several, each work runs in a savepoint: one that raises is undone alone, and its exception
        goes to its caller alone."""
        return await self._turn_writes.add(work)

    async def journal_in_next_write(self, record: JournalRecord) -> None:
        """Journals `record` after this turn of the event loop (see in_next_write), with the other
        entries of the turn in one write."""
        await self._turn_writes.add_journal(record)

    async def reset(self, role: str, username: str | None = None) -> None:
        """Forgets the role's tokens, transactions, fault rules, modes, calls under way and journal;
        with `username`, only that bank's iPG tokens and transactions, so that one bank's contract
        run on a shared iPG leaves the other banks' tokens and the sandbox's rules alone. The bank
        role's tokens belong to no bank username (Token Generation carries none): ValueError."""
        if username is not None:
            if role != "ipg":
                raise ValueError(f"the {role} role's data belongs to no bank username")
            with self._write_lock() as db:  # no fault rule nor mode changes: workers keep their copies
                for table in ROLE_TABLES[role]:
                    db.execute(_SQL[f"forget {table} of a bank"], (username,))
            return
        with self._write_lock(config=True) as db:
            for table in ROLE_TABLES[role]:
                db.execute(_SQL[f"forget {table}"])
            db.execute(_SQL["forget faults"], (role,))
            db.execute(_SQL["forget modes"], (role,))
            self._locks.counters[_in_flight_slot(role)] = 0
        with self._locks.journal:
            self._journal.clear(role)

    async def counts(self, role: str) -> Kept:
        try:
            return kept(self._connection(), SQLITE, role)
        except sqlite3.OperationalError as exc:
            raise self._failed(exc) from exc

    # Faults and modes (mocks/faults.py)
    async def fault_add(self, role: str, rule_id: str, spec: str, times: int | None, at: float) -> None:
        with self._write_lock(config=True) as db:
            db.execute(_SQL["fault_add"], (rule_id, role, spec, times, at))

    async def fault_list(self, role: str) -> list[tuple[str, int | None]]:
        """(spec, remaining) of every rule, oldest first, spent ones included."""
        return self._read(_SQL["fault_list"], (role,))

    async def fault_candidates(self, role: str) -> list[tuple[str, str, int | None]]:
        """(id, spec, remaining) of the rules that may still fire, oldest first."""
        return self._read(_SQL["fault_candidates"], (role,))

    async def fault_claim(self, rule_id: str) -> bool:
        """Takes one firing of a counted rule; False when another call took the last one."""
        async with self._locks.database.turn():
            with self._committed(config=True) as db:
                cursor = db.execute(_SQL["fault_claim"], (rule_id,))
        return cursor.rowcount == 1

    async def fault_delete(self, role: str, rule_id: str) -> bool:
        with self._write_lock(config=True) as db:
            cursor = db.execute(_SQL["fault_delete"], (role, rule_id))
        return cursor.rowcount == 1

    # Calls under way in all workers of a role, counted only under max_concurrency (faults.py). A
    # worker killed mid-call leaves its calls counted until a worker starts, the modes change or
    # the role is reset; clearing while calls are under way undercounts only until they end.
    async def calls_enter(self, role: str, limit: int) -> bool:
        """One more call of `role` under way, unless `limit` already are (then False)."""
        return await self._locks.enter(_in_flight_slot(role), limit)

    async def calls_leave(self, role: str) -> None:
        await self._locks.leave(_in_flight_slot(role))

    async def calls_clear(self, role: str) -> None:
        self._locks.clear(_in_flight_slot(role))

    async def modes_get(self, role: str) -> dict[str, Any] | None:
        rows = self._read(_SQL["modes_get"], (role,))
        return json.loads(rows[0][0]) if rows else None

    async def modes_set(self, role: str, modes: dict[str, Any]) -> None:
        with self._write_lock(config=True) as db:
            db.execute(_SQL["modes_set"], (role, json.dumps(modes)))

    # Journal (mocks/journal.py)
    async def journal_add_many(self, records: Sequence[JournalRecord]) -> None:
        """Journals the records, now (in a server, journal_in_next_write)."""
        self._append(records)

    def _append(self, records: Sequence[JournalRecord], *, held: bool = False) -> None:
        """`held`: the caller has taken this process's turn on the journal's lock (turns.py)."""
        with contextlib.nullcontext() if held else self._locks.journal:
            try:
                self._journal.append(records)
            except OSError as exc:  # a full disk: nothing of the append is left (mocks/journal.py)
                self.journal_lost += len(records)
                self._journal_trouble = f"the journal: {exc}"
                self._journal_troubles.log(exc)
                raise StoreBusy(f"the journal: {exc}") from exc
        self._journal_trouble = None
        if self.journal_lost:  # told once a spell of trouble, which the next one tells anew
            log.warning(
                "the journal takes entries again; %d could not be written meanwhile", self.journal_lost
            )
            self.journal_lost = 0
            self._journal_troubles.seen.clear()

    async def journal(
        self,
        role: str,
        *,
        operation: str | None = None,
        limit: int = 100,
        directions: Collection[str] | None = None,
    ) -> list[JournalEntry]:
        """Newest first, of the newest journal_limit entries."""
        with self._locks.journal:  # a copy with no append or new file half done
            snapshot = self._journal.snapshot(role)
        return self._journal.entries(snapshot, role, operation, limit, directions)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _unwritable(path: str) -> str | None:
    """Why the database's files cannot be opened for writing now (immutable, read-only, a read-only
    file system), or None. SQLite opens such files read-only without a word, and the connection
    stays read-only after the files are writable again: it must be opened anew."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            return f"{name} cannot be written (immutable, read-only, or on a read-only file system)"
    return None


def _in_flight_slot(role: str) -> int:
    return IN_FLIGHT + ("bank", "ipg").index(role)
