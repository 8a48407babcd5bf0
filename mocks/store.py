"""The mocks' state: one SQLite file in WAL mode that every worker of both roles shares.

Uniqueness is the database's job (primary keys and UNIQUE constraints, one writer at a time through
BEGIN IMMEDIATE), so it holds across worker processes. A write is committed before its answer is sent;
the writes a worker queues in one turn of its event loop share one transaction (in_next_write). Writers
queue on a lock file beside the database, and the WAL is copied back from a thread of its own,
so that no request sleeps in SQLite's busy handler or waits for a checkpoint's fsync. The lock file
also holds counters that every worker reads from shared memory, without a query: one of changes to
the fault rules and modes (to know when the copy a worker keeps of them is out of date) and the
journal's (mocks/journal.py: the request journal is in files of its own, appended in turns on a
lock file of its own, `<db>.journal.lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.journal import Journal, JournalEntry, JournalRecord, SharedCounters

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["BankToken", "IpgToken", "Store", "StoreBusy", "Transaction"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bank_tokens (
    bank_transaction_ref TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL UNIQUE,
    msisdn TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    account_number TEXT,
    bank_date_time TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ipg_tokens (
    username TEXT NOT NULL,
    bank_transaction_ref TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    msisdn TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at REAL NOT NULL,
    redeemed_at REAL,
    reversed_at REAL,
    PRIMARY KEY (username, bank_transaction_ref)
);
-- Transactions the iPG answered 0: the duplicate check reads them, and the constraints make sure
-- that a token is redeemed once and reversed once, whatever the number of workers.
CREATE TABLE IF NOT EXISTS ipg_transactions (
    insight_reference TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    username TEXT NOT NULL,
    duplicate_key TEXT NOT NULL,
    bank_transaction_ref TEXT NOT NULL,
    third_party_reference TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (operation, username, duplicate_key),
    UNIQUE (operation, username, bank_transaction_ref)
);
-- The journal was a table here before it moved to files of its own (mocks/journal.py).
DROP TABLE IF EXISTS journal;
-- Fault rules and modes of the control API: in the store so that every worker sees them, and a
-- rule with `times` fires exactly that often whatever the number of workers.
CREATE TABLE IF NOT EXISTS faults (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    spec TEXT NOT NULL,
    remaining INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS modes (
    role TEXT PRIMARY KEY,
    modes TEXT NOT NULL
);
"""

_ROLE_TABLES = {"bank": ("bank_tokens",), "ipg": ("ipg_tokens", "ipg_transactions")}


class _WriterLock:
    """An exclusive flock on `<database><suffix>`: `.lock`, held around each write transaction, or
    `.journal.lock`, held around each append to the journal.

    SQLite's busy handler, when BEGIN IMMEDIATE finds another writer, sleeps 1, 2, 5, 10... ms with
    the worker's event loop blocked; two busy workers then spend much of their time asleep. Queued
    here instead, a writer polls every 50 to 1000 us and gets in within about 0.1 ms of the release.
    """

    def __init__(self, path: str, timeout: float, suffix: str = ".lock") -> None:
        self.path = path + suffix
        self.timeout = timeout
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self) -> None:
        assert fcntl is not None and self.fd is not None
        deadline = 0.0
        pause = 50e-6
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                now = time.monotonic()
                deadline = deadline or now + self.timeout
                if now >= deadline:
                    raise StoreBusy(f"another writer held {self.path} for {self.timeout:g} s") from None
                time.sleep(pause)
                pause = min(pause * 2, 1e-3)

    def release(self) -> None:
        assert fcntl is not None and self.fd is not None
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def shared_memory(self, size: int) -> mmap.mmap:
        """The lock file's first `size` bytes, mapped: memory all processes see, changed under the lock."""
        assert self.fd is not None
        if os.fstat(self.fd).st_size < size:
            os.ftruncate(self.fd, size)  # another process doing the same at once: same size, no harm
        return mmap.mmap(self.fd, size)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock too
            self.fd = None


# WAL pages a checkpoint pass may leave behind for the last pass, the one that holds writers off.
_CAUGHT_UP = 32
# WAL pages (4 KiB) past which the WAL is started over: holding writers off is rare, the WAL small.
_RESTART_AT = 4096


class _Checkpointer:
    """Copies the WAL back into the database every `every` commits, from a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000 WAL pages and stalls that
    worker for milliseconds (the copy and two fsyncs). Here the copy runs beside the writers
    (PASSIVE). But a WAL is only started over when a checkpoint caught up with it whole, which
    writers adding pages meanwhile prevent: so once it is long (_RESTART_AT), a last pass runs with
    writers held off by the lock file.
    """

    def __init__(self, path: str, timeout: float, every: int = 200) -> None:
        self.path = path
        self.timeout = timeout
        self.every = every
        self.commits = 0
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def committed(self) -> None:
        self.commits += 1
        if self.commits % self.every:
            return
        if self._thread is None:  # started on first need: most test stores never write this much
            self._thread = threading.Thread(target=self._run, name="mpesa-atm-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Its own lock file descriptor: flock excludes other descriptors, this process's too.
        lock = _WriterLock(self.path, self.timeout)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                with contextlib.suppress(sqlite3.Error, StoreBusy):  # another one is under way
                    self._checkpoint(db, lock)
        finally:
            db.close()
            lock.close()

    @staticmethod
    def _checkpoint(db: sqlite3.Connection, lock: _WriterLock) -> None:
        # Passes beside the writers while they add more than a few pages during a pass...
        for _ in range(4):
            _, wal_pages, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_pages - copied <= _CAUGHT_UP:
                break
        # ...and, once the WAL is long, a last one with writers held off (for the copy of those few
        # pages and two fsyncs, a millisecond or a few), after which the next writer starts it over.
        if wal_pages > _RESTART_AT:
            lock.acquire()
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                lock.release()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()


@dataclass(frozen=True)
class BankToken:
    bank_transaction_ref: str
    transaction_id: str
    msisdn: str
    amount: str
    currency: str
    account_number: str | None
    bank_date_time: str


@dataclass(frozen=True)
class IpgToken:
    username: str
    bank_transaction_ref: str
    transaction_id: str
    msisdn: str
    amount: str
    currency: str
    created_at: float
    redeemed_at: float | None
    reversed_at: float | None


def _bank_token_row(token: BankToken) -> tuple[str | None, ...]:
    return (
        token.bank_transaction_ref,
        token.transaction_id,
        token.msisdn,
        token.amount,
        token.currency,
        token.account_number,
        token.bank_date_time,
    )


class Transaction:
    """Reads and writes inside one BEGIN IMMEDIATE transaction (see Store.transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # Bank mock
    def bank_token_by_transaction_id(self, transaction_id: str) -> BankToken | None:
        return self._bank_token_where("transaction_id", transaction_id)

    def bank_token(self, bank_transaction_ref: str) -> BankToken | None:
        return self._bank_token_where("bank_transaction_ref", bank_transaction_ref)

    def _bank_token_where(self, column: str, value: str) -> BankToken | None:
        # `column` is one of the two unique columns above, never the caller's text.
        row = self._db.execute(
            "SELECT bank_transaction_ref, transaction_id, msisdn, amount, currency, account_number,"
            f" bank_date_time FROM bank_tokens WHERE {column} = ?",
            (value,),
        ).fetchone()
        return BankToken(*row) if row else None

    def add_bank_token_once(self, token: BankToken, created_at: float) -> BankToken | None:
        """Adds `token` unless its TransactionID has one already, and then returns that one."""
        added = self._db.execute(
            "INSERT INTO bank_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (transaction_id) DO NOTHING",
            (*_bank_token_row(token), created_at),
        ).rowcount
        return None if added else self.bank_token_by_transaction_id(token.transaction_id)

    def add_bank_token(self, token: BankToken, created_at: float) -> None:
        self._db.execute(
            "INSERT INTO bank_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*_bank_token_row(token), created_at)
        )

    # iPG mock
    def ipg_token(self, username: str, bank_transaction_ref: str) -> IpgToken | None:
        row = self._db.execute(
            "SELECT username, bank_transaction_ref, transaction_id, msisdn, amount, currency,"
            " created_at, redeemed_at, reversed_at FROM ipg_tokens"
            " WHERE username = ? AND bank_transaction_ref = ?",
            (username, bank_transaction_ref),
        ).fetchone()
        return IpgToken(*row) if row else None

    def add_ipg_token(self, token: IpgToken) -> None:
        self._db.execute(
            "INSERT INTO ipg_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.username,
                token.bank_transaction_ref,
                token.transaction_id,
                token.msisdn,
                token.amount,
                token.currency,
                token.created_at,
                token.redeemed_at,
                token.reversed_at,
            ),
        )

    def first_ipg_answer(self, operation: str, username: str, duplicate_key: str) -> str | None:
        """The output_InsightReference of the earlier success with this duplicate key, if any."""
        row = self._db.execute(
            "SELECT insight_reference FROM ipg_transactions"
            " WHERE operation = ? AND username = ? AND duplicate_key = ?",
            (operation, username, duplicate_key),
        ).fetchone()
        return row[0] if row else None

    def record_ipg_success(
        self,
        *,
        operation: str,
        token: IpgToken,
        duplicate_key: str,
        insight_reference: str,
        third_party_reference: str,
        at: float,
    ) -> None:
        self._db.execute(
            "INSERT INTO ipg_transactions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                insight_reference,
                operation,
                token.username,
                duplicate_key,
                token.bank_transaction_ref,
                third_party_reference,
                at,
            ),
        )
        column = "redeemed_at" if operation == "token_redemption" else "reversed_at"
        self._db.execute(
            f"UPDATE ipg_tokens SET {column} = ? WHERE username = ? AND bank_transaction_ref = ?",
            (at, token.username, token.bank_transaction_ref),
        )


T = TypeVar("T")


def _while_locked(action: Callable[[], Any], timeout: float) -> None:
    """Runs `action`, again every 10 ms for up to `timeout` while SQLite answers "database is locked".

    Processes opening a new file at once (the workers of `uvicorn --workers N`) race to make it a WAL
    database, and the loser can be told "locked" at once, without SQLite's busy handler waiting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


class _TurnWrites:
    """The writes one store queued in a turn of the event loop, made after it: the rules' work in one
    transaction, the journal entries in one append."""

    def __init__(self, store: Store) -> None:
        self.store = store
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
        db = self.store._db
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
                with self.store.transaction() as tx:
                    outcomes = [self._run(tx, work, alone=len(batch) == 1) for work, _ in batch]
            except Exception as exc:  # StoreBusy, a failed COMMIT, or the one work raised: nothing written
                outcomes = [(None, exc)] * len(batch)
        if journal:  # one write to each role's file for the entries of the turn
            try:
                self.store.journal_add_many([r for r, _ in journal])
            except (StoreBusy, OSError) as exc:
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


class Store:
    """One connection to the shared SQLite file; each worker process opens its own."""

    def __init__(self, path: str, *, journal_limit: int = 10_000, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self.journal_limit = journal_limit
        self._turn_writes = _TurnWrites(self)
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        timeout = busy_timeout_ms / 1000
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if path != ":memory:":
            _while_locked(lambda: self._db.execute("PRAGMA journal_mode = WAL"), timeout)
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the OS's hands);
        # only a power cut may lose the last commits.
        self._db.execute("PRAGMA synchronous = NORMAL")
        _while_locked(lambda: self._db.executescript(_SCHEMA), timeout)  # idempotent; commits itself
        self._lock: _WriterLock | None = None
        self._journal_lock: _WriterLock | None = None
        self._checkpointer: _Checkpointer | None = None
        # Shared by the processes on one file, else this process's own (see SharedCounters).
        self._shared: mmap.mmap | None = None
        if path != ":memory:" and fcntl is not None:  # elsewhere, SQLite's locking and checkpoints
            self._lock = _WriterLock(path, timeout)
            # The journal's appends take turns of their own: a few microseconds each, they need not
            # wait for the transactions (A/B, bank mock, 2 workers: +2 to 4% requests/s).
            self._journal_lock = _WriterLock(path, timeout, ".journal.lock")
            self._shared = self._lock.shared_memory(SharedCounters.SIZE)
            self._db.execute("PRAGMA wal_autocheckpoint = 0")  # _Checkpointer's job
            self._checkpointer = _Checkpointer(path, timeout)
        self._counters = SharedCounters(self._shared)
        self._journal = Journal(path, journal_limit, self._counters)

    def close(self) -> None:
        self._db.close()
        self._release_helpers()

    def _release_helpers(self) -> None:
        journal = getattr(self, "_journal", None)
        if journal is not None:
            journal.close()
        shared = getattr(self, "_shared", None)
        if shared is not None:
            self._counters = SharedCounters()  # the mapping goes: no reader may keep using it
            shared.close()
            self._shared = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for lock in (self._lock, getattr(self, "_journal_lock", None)):
            if lock is not None:
                lock.close()

    def __del__(self) -> None:
        # An app built in a test is dropped without a shutdown; close rather than leave it to the
        # connection's own finaliser (which warns on Python 3.13).
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        if hasattr(self, "_lock"):
            self._release_helpers()

    def config_version(self) -> int:
        """A number that changes whenever any process changes fault rules or modes in this file."""
        return self._counters[0]

    @contextlib.contextmanager
    def _turn(self, lock: _WriterLock | None) -> Iterator[None]:
        """This process's turn on a lock file: one writer at a time across every process (StoreBusy
        past the busy timeout). `self._lock` guards the database and the fault and mode counter,
        `self._journal_lock` the journal's files and counters."""
        if lock is not None:
            lock.acquire()
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    @contextlib.contextmanager
    def _write_lock(self, *, config: bool = False) -> Iterator[None]:
        """One write transaction, in this process's turn on the lock file; `config`: it changes
        fault rules or modes (see config_version)."""
        with self._turn(self._lock):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy(str(exc)) from exc
                raise
            if config:  # after the commit, so that whoever sees the new number reads the change
                self._counters[0] += 1
        if self._checkpointer is not None:
            self._checkpointer.committed()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One writer at a time across every process; committed when the block ends without error."""
        with self._write_lock():
            yield Transaction(self._db)

    def in_next_write(self, work: Callable[[Transaction], T]) -> asyncio.Future[T]:
        """Runs `work` in the write transaction that follows this turn of the event loop, shared
        with whatever else this store queued in the turn; the future is done after the COMMIT.

        Under load several calls end their turn together (about 3 with 10 connections on 2
        workers) and share one BEGIN, lock turn and COMMIT. When there are several, each work runs
        in a savepoint: one that raises is undone alone, and its exception goes to its future alone."""
        return self._turn_writes.add(work)

    def journal_in_next_write(self, record: JournalRecord) -> asyncio.Future[None]:
        """Journals `record` after this turn of the event loop (see in_next_write), with the other
        entries of the turn in one write."""
        return self._turn_writes.add_journal(record)

    def reset(self, role: str) -> None:
        with self._write_lock(config=True):
            for table in _ROLE_TABLES[role]:
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("DELETE FROM faults WHERE role = ?", (role,))
            self._db.execute("DELETE FROM modes WHERE role = ?", (role,))
        with self._turn(self._journal_lock):
            self._journal.clear(role)

    # Faults and modes (mocks/faults.py)
    def fault_add(self, role: str, rule_id: str, spec: str, times: int | None, at: float) -> None:
        with self._write_lock(config=True):
            self._db.execute("INSERT INTO faults VALUES (?, ?, ?, ?, ?)", (rule_id, role, spec, times, at))

    def fault_list(self, role: str) -> list[tuple[str, int | None]]:
        """(spec, remaining) of every rule, oldest first, spent ones included."""
        return self._db.execute(
            "SELECT spec, remaining FROM faults WHERE role = ? ORDER BY created_at, id", (role,)
        ).fetchall()

    def fault_candidates(self, role: str) -> list[tuple[str, str, int | None]]:
        """(id, spec, remaining) of the rules that may still fire, oldest first."""
        return self._db.execute(
            "SELECT id, spec, remaining FROM faults"
            " WHERE role = ? AND (remaining IS NULL OR remaining > 0) ORDER BY created_at, id",
            (role,),
        ).fetchall()

    def fault_claim(self, rule_id: str) -> bool:
        """Takes one firing of a counted rule; False when another call took the last one."""
        with self._write_lock(config=True):
            cursor = self._db.execute(
                "UPDATE faults SET remaining = remaining - 1 WHERE id = ? AND remaining > 0", (rule_id,)
            )
        return cursor.rowcount == 1

    def fault_delete(self, role: str, rule_id: str) -> bool:
        with self._write_lock(config=True):
            cursor = self._db.execute("DELETE FROM faults WHERE role = ? AND id = ?", (role, rule_id))
        return cursor.rowcount == 1

    def modes_get(self, role: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT modes FROM modes WHERE role = ?", (role,)).fetchone()
        return json.loads(row[0]) if row else None

    def modes_set(self, role: str, modes: dict[str, Any]) -> None:
        with self._write_lock(config=True):
            self._db.execute(
                "INSERT INTO modes VALUES (?, ?) ON CONFLICT (role) DO UPDATE SET modes = excluded.modes",
                (role, json.dumps(modes)),
            )

    # Journal (mocks/journal.py)
    def journal_add(
        self,
        *,
        role: str,
        direction: str,
        operation: str | None,
        method: str,
        url: str,
        status: int | None,
        request: str,
        response: str,
        duration_ms: float,
    ) -> None:
        self.journal_add_many(
            [JournalRecord(role, direction, operation, method, url, status, request, response, duration_ms)]
        )

    def journal_add_many(self, records: Sequence[JournalRecord]) -> None:
        """Journals the records, now (in a server, journal_in_next_write)."""
        with self._turn(self._journal_lock):
            self._journal.append(records)

    def journal(self, role: str, *, operation: str | None = None, limit: int = 100) -> list[JournalEntry]:
        """Newest first, of the newest journal_limit entries."""
        with self._turn(self._journal_lock):  # a copy with no append or new file half done
            snapshot = self._journal.snapshot(role)
        return self._journal.entries(snapshot, role, operation, limit)
