"""The mocks' state on PostgreSQL: one database that several `mpesa-atm serve` instances, on several
machines, share as one sandbox (`--db postgresql://...`; docs/shared-sandbox.md).

The same tables as the SQLite store (mocks/store.py), and the same rule: uniqueness is the
database's job. A turn's decisions run in one REPEATABLE READ transaction, so two instances may
both read "no duplicate" for the same call, from one snapshot each; the second one's INSERT then
waits on the unique index until the first commits and fails, and its decisions run again in a new
transaction, whose snapshot has the first one's row: one success per duplicate set, the others
answered with the first one's reference. A decision is a function of its transaction
(mocks/storage.py), so running it again is safe. Single-statement writes (a fault rule's count,
calls under way) run at READ COMMITTED, where concurrent ones wait for each other.

The calls of one turn of a worker's event loop share one transaction, as on SQLite, written from a
small pool of threads with psycopg 3's connection pool: the event loop never waits for PostgreSQL,
and a worker answers its other calls meanwhile. The rules' decisions are plain functions shared with
the SQLite store, whose writes must run inside the loop's turn; that is why they run here in
threads on psycopg's blocking connections rather than on its asyncio ones.

Fault rules and modes are read by every worker of every instance when the shared `harness_config`
version moves: each worker reads it every POLL_SECONDS in a thread of its own, and knows its own
changes at once. The journal is a table, trimmed to about twice `journal_limit` entries a role.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg.errors
from psycopg import IsolationLevel
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from mpesa_atm.errors import StoreBusy, StoreConflict, StoreError
from mpesa_atm.mocks.background import OncePerKind
from mpesa_atm.mocks.pg_tables import POSTGRES, SCHEMA, SCHEMA_LOCK, SCHEMA_PRESENT
from mpesa_atm.mocks.records import ROLE_TABLES, JournalEntry, JournalRecord, Kept, loads_body
from mpesa_atm.mocks.statements import Transaction, kept
from mpesa_atm.mocks.turns import Flush, Outcome, TurnQueue
from mpesa_atm.settings import database_label

__all__ = ["POLL_SECONDS", "PostgresStore"]

log = logging.getLogger("mpesa_atm.mocks")

POLL_SECONDS = 0.2  # how often a worker reads the shared config version (rules and modes)
CONNECTIONS = 4  # per worker: the threads writing its turns, and the control API's reads
_ATTEMPTS = 8  # transactions a turn tries when concurrent ones keep committing conflicting rows first
_RETRIED = (StoreConflict, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
_UNREACHABLE = (psycopg.OperationalError, PoolTimeout)
# Text is UTF-8 whatever the database's encoding: in a SQL_ASCII database psycopg would otherwise
# return bytes, and every token would differ from its request.
_CONNECTION: dict[str, Any] = {"autocommit": True, "client_encoding": "utf8"}
_SQL = POSTGRES.statements  # mocks/statements.py

T = TypeVar("T")
Item = TypeVar("Item")
P = ParamSpec("P")


def _threaded(
    method: Callable[Concatenate[PostgresStore, P], T],
) -> Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]]:
    """`method` as a coroutine that runs it in the store's threads: while the database is out of
    reach the pool waits up to the busy timeout for a connection, and the worker's calls go on
    meanwhile."""

    @functools.wraps(method)
    async def threaded(store: PostgresStore, *args: P.args, **kwargs: P.kwargs) -> T:
        action = functools.partial(method, store, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(store._executor, action)

    return threaded


class PostgresStore:
    """One worker's way to the shared database: a pool of CONNECTIONS connections, the threads that
    use them for the calls' writes and the methods of mocks/storage.Storage, and the thread that
    polls the config version. close() ends them (an app's lifespan does: mocks/app.py)."""

    def __init__(
        self,
        url: str,
        *,
        journal_limit: int = 10_000,
        busy_timeout: float = 5.0,
        reachable_later: bool = False,
    ) -> None:
        """StoreError when the database cannot be used; with `reachable_later` (a worker of a mock
        whose database `serve` has already proved), one out of reach is logged and waited for: the
        worker serves, answering -7 until the database is back, rather than failing to start (which
        would stop every worker of the mock: uvicorn ends its parent when one fails at start)."""
        self.label = database_label(url)
        self.journal_limit = journal_limit
        self.busy_timeout = busy_timeout
        version: int | None = None  # unknown: the first poll that reads it renews the rules and modes
        try:
            with psycopg.connect(url, connect_timeout=max(int(busy_timeout), 2), **_CONNECTION) as conn:
                _create_tables(conn)
                version = _config_version(conn)
        except psycopg.OperationalError as exc:
            if not reachable_later:
                raise StoreError(f"cannot use the database {self.label}: {_first_line(exc)}") from exc
            log.warning(
                "the database %s is out of reach as this worker starts: %s", self.label, _first_line(exc)
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot use the database {self.label}: {_first_line(exc)}") from exc
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=CONNECTIONS + 1,  # one more for the config poller
            timeout=busy_timeout,
            kwargs=_CONNECTION,
            configure=self._configure,
            open=True,
            name="mpesa-atm",
        )
        self._executor = ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="mpesa-atm-postgres")
        self._works: TurnQueue[Callable[[Transaction], Any]] = TurnQueue(self._in_threads(self._run_works))
        self._journal: TurnQueue[JournalRecord] = TurnQueue(self._in_threads(self._run_journal))
        self._remote_version = version  # the shared version last read
        # Moves when the shared version moves or this worker makes a change (seen by it at once).
        self._generation = 0
        self._appended = 0  # journal entries this worker wrote since it last trimmed the journal
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="mpesa-atm-config-poll", daemon=True)
        self._poller.start()

    def close(self) -> None:
        """Ends the poller, the writing threads (after their batches) and the pool; again, nothing."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._poller.join()
        self._executor.shutdown(wait=True)
        self._pool.close()

    # Connections
    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Each new connection of the pool: a statement waiting for a lock that another session holds
        (a migration's DDL, a tool's LOCK TABLE) gives up at the busy timeout, LockNotAvailable, which
        is StoreBusy as an unreachable database is (-7), instead of leaving the call waiting without
        end. SET rather than a startup `options`, which PgBouncer refuses."""
        conn.execute(f"SET lock_timeout = {max(int(self.busy_timeout * 1000), 1)}")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool; StoreBusy when none comes within the busy timeout or the
        database cannot be reached."""
        if self._closed.is_set():
            raise StoreBusy("the store is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except _UNREACHABLE as exc:
            raise StoreBusy(f"the database {self.label}: {_first_line(exc)}") from exc

    @_threaded
    def write(self, work: Callable[[Transaction], T]) -> T:
        """`work` in a transaction of its own, committed when it returns (the control API's)."""
        with self._connection() as conn, conn.transaction():
            return work(Transaction(conn, POSTGRES))

    @contextlib.contextmanager
    def _config_change(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction that changes fault rules or modes: it moves the shared version."""
        with self._connection() as conn:
            with conn.transaction():
                yield conn
                conn.execute("UPDATE harness_config SET version = version + 1 WHERE id = 1")
            self._generation += 1

    async def config_version(self) -> int:
        """A number that changes when any worker of any instance changes fault rules or modes: at
        once for this worker's own changes, within POLL_SECONDS for the others'."""
        return self._generation

    async def health(self) -> str | None:
        """None: a database out of reach is each call's -7 within the busy timeout, and health stays
        200, the worker up (tests/reliability/test_shared_sandbox.py); what a SQLite store's health
        watches (its file deleted, opened read-only) has no counterpart here."""
        return None

    def _poll(self) -> None:
        errors = OncePerKind(f"the config poller of {self.label}")
        while not self._closed.wait(POLL_SECONDS):
            try:
                with self._pool.connection(timeout=POLL_SECONDS) as conn:
                    version = _config_version(conn)
            except _UNREACHABLE:
                continue  # unreachable for a while: the next poll tries again
            except Exception as exc:  # the poller goes on: the calls would not see changes else
                errors.log(exc)
                continue
            if version != self._remote_version:
                self._remote_version = version
                self._generation += 1

    # The calls' writes, batched per turn of the event loop
    def _in_threads(self, flush: Callable[[list[Item]], list[Outcome]]) -> Flush[Item]:
        """`flush`, run in a thread of the store's (the future of its outcomes)."""

        def in_a_thread(items: list[Item]) -> list[Outcome] | asyncio.Future[list[Outcome]]:
            try:
                return asyncio.get_running_loop().run_in_executor(self._executor, flush, items)
            except RuntimeError as exc:  # the store was closed meanwhile
                return [(None, StoreBusy(f"the store is closed ({exc})"))] * len(items)

        return in_a_thread

    async def in_next_write(self, work: Callable[[Transaction], T]) -> T:
        """Runs `work` in the transaction written after this turn of the event loop, with whatever
        else this worker queued in the turn; its value after the COMMIT."""
        return await self._works.add(work)

    async def journal_in_next_write(self, record: JournalRecord) -> None:
        await self._journal.add(record)

    def _run_works(self, works: list[Callable[[Transaction], Any]]) -> list[Outcome]:
        """Every work in one REPEATABLE READ transaction: its reads one snapshot, so that a decision
        never reads "no duplicate" from before a concurrent commit and "token redeemed" from after
        it. When a concurrent transaction committed a conflicting row first (a unique row, a row
        updated: StoreConflict, a serialization failure), the whole turn runs again in a new
        transaction, whose snapshot has that row: the repeat reads the first call's answer. When a
        work raises otherwise, the turn runs again with each work in a savepoint, so that it is
        undone alone and its exception goes to its future alone."""
        try:
            with self._connection() as conn:
                conn.isolation_level = IsolationLevel.REPEATABLE_READ
                try:
                    return _in_one_transaction(conn, works)
                finally:
                    conn.isolation_level = None  # the pool's other uses: single statements
        except _UNREACHABLE as exc:
            busy = StoreBusy(f"the database {self.label}: {_first_line(exc)}")
            return [(None, busy)] * len(works)
        except Exception as exc:  # StoreBusy, a failed COMMIT: nothing written
            return [(None, exc)] * len(works)

    def _run_journal(self, records: list[JournalRecord]) -> list[Outcome]:
        try:
            self._append(records)
        except Exception as exc:  # StoreBusy, a closed store: to the futures, none left waiting
            return [(None, exc)] * len(records)
        return [(None, None)] * len(records)

    # Resets
    @_threaded
    def reset(self, role: str, username: str | None = None) -> None:
        """Everything of `role`; with `username`, only that bank's iPG tokens and transactions."""
        if username is not None:
            if role != "ipg":
                raise ValueError("the bank mock's tokens belong to no bank username")
            with self._connection() as conn, conn.transaction():
                for table in ROLE_TABLES[role]:
                    conn.execute(_SQL[f"forget {table} of a bank"], (username,))
            return
        with self._config_change() as conn:
            for table in ROLE_TABLES[role]:
                conn.execute(_SQL[f"forget {table}"])
            conn.execute(_SQL["forget faults"], (role,))
            conn.execute(_SQL["forget modes"], (role,))
            conn.execute("UPDATE calls_in_flight SET count = 0 WHERE role = %s", (role,))
            conn.execute("DELETE FROM journal WHERE role = %s", (role,))

    @_threaded
    def counts(self, role: str) -> Kept:
        with self._connection() as conn:
            return kept(conn, POSTGRES, role)

    # Faults and modes (mocks/faults.py)
    @_threaded
    def fault_add(self, role: str, rule_id: str, spec: str, times: int | None, at: float) -> None:
        with self._config_change() as conn:
            conn.execute(_SQL["fault_add"], (rule_id, role, spec, times, at))

    @_threaded
    def fault_list(self, role: str) -> list[tuple[str, int | None]]:
        with self._connection() as conn:
            rows = conn.execute(_SQL["fault_list"], (role,)).fetchall()
        return [(spec, remaining) for spec, remaining in rows]

    @_threaded
    def fault_candidates(self, role: str) -> list[tuple[str, str, int | None]]:
        with self._connection() as conn:
            rows = conn.execute(_SQL["fault_candidates"], (role,)).fetchall()
        return [(rule_id, spec, remaining) for rule_id, spec, remaining in rows]

    @_threaded
    def fault_claim(self, rule_id: str) -> bool:
        """Takes one firing of a counted rule; False when another call, of any instance, took the last."""
        with self._config_change() as conn:
            claimed = conn.execute(_SQL["fault_claim"], (rule_id,)).rowcount
        return claimed == 1

    @_threaded
    def fault_delete(self, role: str, rule_id: str) -> bool:
        with self._config_change() as conn:
            deleted = conn.execute(_SQL["fault_delete"], (role, rule_id)).rowcount
        return deleted == 1

    # Calls under way in all workers of all instances (max_concurrency); as on SQLite, an instance
    # killed mid-call leaves its calls counted until a worker starts, the modes change or a reset.
    @_threaded
    def calls_enter(self, role: str, limit: int) -> bool:
        with self._connection() as conn:
            return (
                conn.execute(
                    "UPDATE calls_in_flight SET count = count + 1 WHERE role = %s AND count < %s",
                    (role, limit),
                ).rowcount
                == 1
            )

    @_threaded
    def calls_leave(self, role: str) -> None:
        with self._connection() as conn:
            conn.execute("UPDATE calls_in_flight SET count = GREATEST(count - 1, 0) WHERE role = %s", (role,))

    @_threaded
    def calls_clear(self, role: str) -> None:
        with self._connection() as conn:
            conn.execute("UPDATE calls_in_flight SET count = 0 WHERE role = %s", (role,))

    @_threaded
    def modes_get(self, role: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            row = conn.execute(_SQL["modes_get"], (role,)).fetchone()
        return dict(row[0]) if row else None

    @_threaded
    def modes_set(self, role: str, modes: dict[str, Any]) -> None:
        with self._config_change() as conn:
            conn.execute(_SQL["modes_set"], (role, Jsonb(modes)))

    # Journal
    @_threaded
    def journal_add_many(self, records: Sequence[JournalRecord]) -> None:
        """Journals the records now (in a server, journal_in_next_write)."""
        self._append(records)

    def _append(self, records: Sequence[JournalRecord]) -> None:
        """The records in one transaction; every journal_limit / 10 entries this
        worker wrote, the entries of their roles past twice journal_limit are removed."""
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connection() as conn, conn.transaction():
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO journal (role, at, direction, operation, method, url, status, request,"
                    " response, duration_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(r.role, at, *r[1:]) for r in records],
                )
            self._appended += len(records)
            if self._appended >= max(self.journal_limit // 10, 1):
                self._appended = 0
                for role in {r.role for r in records}:
                    conn.execute(
                        "DELETE FROM journal WHERE role = %s AND id <= (SELECT id FROM journal"
                        " WHERE role = %s ORDER BY id DESC OFFSET %s LIMIT 1)",
                        (role, role, 2 * self.journal_limit),
                    )

    @_threaded
    def journal(
        self,
        role: str,
        *,
        operation: str | None = None,
        limit: int = 100,
        directions: Collection[str] | None = None,
    ) -> list[JournalEntry]:
        """Newest first, of the newest journal_limit entries."""
        chosen = list(directions) if directions is not None else None
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, at, direction, operation, method, url, status, request, response, duration_ms"
                " FROM (SELECT * FROM journal WHERE role = %s ORDER BY id DESC LIMIT %s) AS newest"
                " WHERE (%s::text IS NULL OR operation = %s) AND (%s::text[] IS NULL OR direction = ANY(%s))"
                " ORDER BY id DESC LIMIT %s",
                (role, self.journal_limit, operation, operation, chosen, chosen, limit),
            ).fetchall()
        return [
            JournalEntry(
                id=entry_id,
                at=at,
                role=role,
                direction=direction,
                operation=op,
                method=method,
                url=url,
                status=status,
                request=loads_body(request),
                response=loads_body(response),
                duration_ms=duration_ms,
            )
            for entry_id, at, direction, op, method, url, status, request, response, duration_ms in rows
        ]


def _in_one_transaction(
    conn: psycopg.Connection[Any], works: list[Callable[[Transaction], Any]]
) -> list[Outcome]:
    isolated = False  # each work in a savepoint
    for _ in range(_ATTEMPTS):
        try:
            with conn.transaction():
                tx = Transaction(conn, POSTGRES)
                if isolated:
                    return [_in_savepoint(conn, tx, work) for work in works]
                return [(work(tx), None) for work in works]
        except _RETRIED:  # a concurrent transaction committed first: a new snapshot sees it
            continue
        except _UNREACHABLE:
            raise
        except Exception as exc:
            if isolated or len(works) == 1:
                return [(None, exc)] * len(works)
            isolated = True
    busy = StoreBusy(f"{_ATTEMPTS} transactions in a row conflicted with concurrent ones")
    return [(None, busy)] * len(works)


def _in_savepoint(
    conn: psycopg.Connection[Any], tx: Transaction, work: Callable[[Transaction], Any]
) -> Outcome:
    """The work's value, or its exception with its writes undone; a conflict ends the transaction
    (its snapshot is too old to decide again in it)."""
    try:
        with conn.transaction():  # a savepoint
            return work(tx), None
    except _RETRIED + _UNREACHABLE:
        raise
    except Exception as exc:
        return None, exc


def _create_tables(conn: psycopg.Connection[Any]) -> None:
    """The tables, unless there: one instance at a time, and only when they are missing, since
    CREATE INDEX IF NOT EXISTS locks its table against writes even when the index is there (a
    worker starting would hold up every instance's calls)."""
    if conn.execute(SCHEMA_PRESENT).fetchone() == (True,):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(SCHEMA)  # idempotent, all or nothing: another instance may have made it meanwhile


def _config_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT version FROM harness_config WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
