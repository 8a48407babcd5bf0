"""The mocks' state: one SQLite file in WAL mode that every worker of both roles shares.

Uniqueness is the database's job (primary keys and UNIQUE constraints, one writer at a time through
BEGIN IMMEDIATE), so it holds across worker processes. A write is committed before its answer is sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["BankToken", "IpgToken", "JournalEntry", "Store", "StoreBusy", "Transaction"]

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
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    role TEXT NOT NULL,
    direction TEXT NOT NULL,
    operation TEXT,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_role ON journal (role, id);
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


class StoreBusy(Exception):
    """The database stayed locked by another writer for longer than the busy timeout."""


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


@dataclass(frozen=True)
class JournalEntry:
    id: int
    at: str
    role: str
    direction: str
    operation: str | None
    method: str
    url: str
    status: int | None
    request: Any
    response: Any
    duration_ms: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "direction": self.direction,
            "operation": self.operation,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "request": self.request,
            "response": self.response,
            "duration_ms": self.duration_ms,
        }


_JOURNAL_FIELDS = [f.name for f in dataclasses.fields(JournalEntry)]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class Transaction:
    """Reads and writes inside one BEGIN IMMEDIATE transaction (see Store.transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    # Bank mock
    def bank_token_by_transaction_id(self, transaction_id: str) -> BankToken | None:
        row = self._db.execute(
            "SELECT bank_transaction_ref, transaction_id, msisdn, amount, currency, account_number,"
            " bank_date_time FROM bank_tokens WHERE transaction_id = ?",
            (transaction_id,),
        ).fetchone()
        return BankToken(*row) if row else None

    def bank_token(self, bank_transaction_ref: str) -> BankToken | None:
        row = self._db.execute(
            "SELECT bank_transaction_ref, transaction_id, msisdn, amount, currency, account_number,"
            " bank_date_time FROM bank_tokens WHERE bank_transaction_ref = ?",
            (bank_transaction_ref,),
        ).fetchone()
        return BankToken(*row) if row else None

    def add_bank_token(self, token: BankToken, created_at: float) -> None:
        self._db.execute(
            "INSERT INTO bank_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.bank_transaction_ref,
                token.transaction_id,
                token.msisdn,
                token.amount,
                token.currency,
                token.account_number,
                token.bank_date_time,
                created_at,
            ),
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


class Store:
    """One connection to the shared SQLite file; each worker process opens its own."""

    def __init__(self, path: str, *, journal_limit: int = 10_000, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self.journal_limit = journal_limit
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the OS's hands);
        # only a power cut may lose the last commits.
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)  # idempotent; executescript commits on its own

    def close(self) -> None:
        self._db.close()

    def __del__(self) -> None:
        # An app built in a test is dropped without a shutdown; close rather than leave it to the
        # connection's own finaliser (which warns on Python 3.13).
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(str(exc)) from exc
            raise
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One writer at a time across every process; committed when the block ends without error."""
        with self._write_lock():
            yield Transaction(self._db)

    def reset(self, role: str) -> None:
        with self._write_lock():
            for table in _ROLE_TABLES[role]:
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("DELETE FROM journal WHERE role = ?", (role,))
            self._db.execute("DELETE FROM faults WHERE role = ?", (role,))
            self._db.execute("DELETE FROM modes WHERE role = ?", (role,))

    # Faults and modes (mocks/faults.py)
    def fault_add(self, role: str, rule_id: str, spec: str, times: int | None, at: float) -> None:
        with self._write_lock():
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
        with self._write_lock():
            cursor = self._db.execute(
                "UPDATE faults SET remaining = remaining - 1 WHERE id = ? AND remaining > 0", (rule_id,)
            )
        return cursor.rowcount == 1

    def fault_delete(self, role: str, rule_id: str) -> bool:
        with self._write_lock():
            cursor = self._db.execute("DELETE FROM faults WHERE role = ? AND id = ?", (role, rule_id))
        return cursor.rowcount == 1

    def modes_get(self, role: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT modes FROM modes WHERE role = ?", (role,)).fetchone()
        return json.loads(row[0]) if row else None

    def modes_set(self, role: str, modes: dict[str, Any]) -> None:
        with self._write_lock():
            self._db.execute(
                "INSERT INTO modes VALUES (?, ?) ON CONFLICT (role) DO UPDATE SET modes = excluded.modes",
                (role, json.dumps(modes)),
            )

    # Journal
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
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._write_lock():
            cursor = self._db.execute(
                "INSERT INTO journal (at, role, direction, operation, method, url, status, request,"
                " response, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (at, role, direction, operation, method, url, status, request, response, duration_ms),
            )
            # Bounded: entries older than the newest journal_limit go (ids only grow).
            assert cursor.lastrowid is not None
            self._db.execute(
                "DELETE FROM journal WHERE id <= ? AND role = ?",
                (cursor.lastrowid - self.journal_limit, role),
            )

    def journal(self, role: str, *, operation: str | None = None, limit: int = 100) -> list[JournalEntry]:
        """Newest first."""
        query = (
            "SELECT id, at, role, direction, operation, method, url, status, request, response,"
            " duration_ms FROM journal WHERE role = ?"
        )
        params: list[Any] = [role]
        if operation is not None:
            query += " AND operation = ?"
            params.append(operation)
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        entries = []
        for row in self._db.execute(query, params):
            values = dict(zip(_JOURNAL_FIELDS, row, strict=True))
            values["request"] = _loads(values["request"])
            values["response"] = _loads(values["response"])
            entries.append(JournalEntry(**values))
        return entries
