"""The statements both storage backends run, one set: those of a write transaction (`Transaction`:
the tokens and transactions the rules decide on, mocks/ipg.py and mocks/bank.py, what the proxy's
ledger saw answered, proxy/ledger.py, and retention's removals), and those of the fault rules, the
modes and the resets (`Dialect.statements`, run by each backend's methods of mocks/storage.Storage).

The backends differ only in what `Dialect` says, each in its own module: the placeholder (SQLite's
`?`, psycopg's `%s`), the driver's exception for a unique row already there, and how to remove a
table's oldest rows (SQLite by rowid, PostgreSQL by created_at's index). The statements are written
once with `?` and rewritten once per dialect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mpesa_atm.errors import StoreConflict
from mpesa_atm.mocks.records import (
    KEPT_AS,
    LEDGER_TABLES,
    ROLE_TABLES,
    BankToken,
    FirstAnswer,
    Generation,
    IpgToken,
    Kept,
    Payments,
)

__all__ = ["Dialect", "Transaction", "kept"]

_BANK_TOKEN = (
    "SELECT bank_transaction_ref, transaction_id, msisdn, amount, currency, account_number,"
    " bank_date_time FROM bank_tokens WHERE "
)
_STATEMENTS = {
    "bank_token_by_transaction_id": _BANK_TOKEN + "transaction_id = ?",
    "bank_token": _BANK_TOKEN + "bank_transaction_ref = ?",
    "add_bank_token_once": (
        "INSERT INTO bank_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (transaction_id) DO NOTHING"
    ),
    "add_bank_token": "INSERT INTO bank_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "ipg_token": (
        "SELECT username, bank_transaction_ref, transaction_id, msisdn, amount, currency,"
        " created_at, redeemed_at, reversed_at FROM ipg_tokens"
        " WHERE username = ? AND bank_transaction_ref = ?"
    ),
    "add_ipg_token": "INSERT INTO ipg_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "first_ipg_answer": (
        "SELECT insight_reference FROM ipg_transactions"
        " WHERE operation = ? AND username = ? AND duplicate_key = ?"
    ),
    "add_ipg_transaction": "INSERT INTO ipg_transactions VALUES (?, ?, ?, ?, ?, ?, ?)",
    "redeemed": "UPDATE ipg_tokens SET redeemed_at = ? WHERE username = ? AND bank_transaction_ref = ?",
    "reversed": "UPDATE ipg_tokens SET reversed_at = ? WHERE username = ? AND bank_transaction_ref = ?",
    # The proxy's ledger (proxy/ledger.py)
    "ledger_first_answer": (
        "SELECT reference, exchange_id FROM ledger_answers"
        " WHERE duplicate_key = ? AND operation = ? AND scope = ? AND role = ?"
    ),
    "ledger_add_answer": "INSERT INTO ledger_answers VALUES (?, ?, ?, ?, ?, ?, ?)",
    "ledger_payments": (
        "SELECT redeemed_by, reversed_by FROM ledger_tokens WHERE bank_transaction_ref = ? AND scope = ?"
    ),
    # The first redemption and the first reversal stay: what a second one is judged against.
    "ledger_paid": (
        "INSERT INTO ledger_tokens VALUES (?, ?, ?, ?, ?) ON CONFLICT (bank_transaction_ref, scope)"
        " DO UPDATE SET redeemed_by = COALESCE(ledger_tokens.redeemed_by, excluded.redeemed_by),"
        " reversed_by = COALESCE(ledger_tokens.reversed_by, excluded.reversed_by)"
    ),
    "ledger_generation": (
        "SELECT bank_transaction_ref, generated, transaction_id, msisdn, amount, currency, created_at,"
        " exchange_id FROM ledger_generations WHERE bank_transaction_ref = ?"
    ),
    # A reference first seen in a refusal, then answered 0, is a token from then on; a token stays one.
    "ledger_add_generation": (
        "INSERT INTO ledger_generations VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bank_transaction_ref)"
        " DO UPDATE SET generated = excluded.generated, transaction_id = excluded.transaction_id,"
        " msisdn = excluded.msisdn, amount = excluded.amount, currency = excluded.currency,"
        " created_at = excluded.created_at, exchange_id = excluded.exchange_id"
        " WHERE ledger_generations.generated = 0 AND excluded.generated = 1"
    ),
    # Fault rules and modes (mocks/faults.py), resets
    "fault_add": "INSERT INTO faults VALUES (?, ?, ?, ?, ?)",
    "fault_list": "SELECT spec, remaining FROM faults WHERE role = ? ORDER BY created_at, id",
    "fault_candidates": (
        "SELECT id, spec, remaining FROM faults"
        " WHERE role = ? AND (remaining IS NULL OR remaining > 0) ORDER BY created_at, id"
    ),
    "fault_claim": "UPDATE faults SET remaining = remaining - 1 WHERE id = ? AND remaining > 0",
    "fault_delete": "DELETE FROM faults WHERE role = ? AND id = ?",
    "modes_get": "SELECT modes FROM modes WHERE role = ?",
    "modes_set": "INSERT INTO modes VALUES (?, ?) ON CONFLICT (role) DO UPDATE SET modes = excluded.modes",
    "forget faults": "DELETE FROM faults WHERE role = ?",
    "forget modes": "DELETE FROM modes WHERE role = ?",
    "count faults": "SELECT count(*) FROM faults WHERE role = ?",
    "count modes": "SELECT count(*) FROM modes WHERE role = ?",
}


@dataclass(frozen=True)
class Dialect:
    """What a backend's SQL and driver say differently."""

    placeholder: str  # "?" or "%s"
    conflict: type[Exception]  # the driver's exception for a unique row already there
    # Removes up to the limit of a table's oldest rows created before the cutoff; `{table}` is one of
    # ROLE_TABLES's names; its values are (cutoff, limit), in this order.
    remove_older: str
    # Every statement of this module in this dialect, by name (the tables' as "remove_older <table>").
    statements: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        statements = {name: self._own(query) for name, query in _STATEMENTS.items()}
        for role, tables in ROLE_TABLES.items():
            for table in tables:
                statements[f"remove_older {table}"] = self._own(self.remove_older.format(table=table))
                statements[f"forget {table}"] = f"DELETE FROM {table}"
                statements[f"count {table}"] = f"SELECT count(*) FROM {table}"
                if role == "ipg":  # the iPG's tokens and transactions are a bank's (its username)
                    statements[f"forget {table} of a bank"] = self._own(
                        f"DELETE FROM {table} WHERE username = ?"
                    )
        for table in LEDGER_TABLES:
            statements[f"remove_older {table}"] = self._own(self.remove_older.format(table=table))
        object.__setattr__(self, "statements", statements)

    def _own(self, query: str) -> str:
        """`query` with this dialect's placeholders (no statement has a literal `?`)."""
        return query.replace("?", self.placeholder)


def kept(db: Any, dialect: Dialect, role: str) -> Kept:
    """What the store holds of `role`, one count a table (`db`: a connection, as Transaction's)."""

    def count(name: str, *values: str) -> int:
        return int(db.execute(dialect.statements[name], values).fetchone()[0])

    counts = {KEPT_AS[table]: count(f"count {table}") for table in ROLE_TABLES[role]}
    return Kept(**counts, fault_rules=count("count faults", role), modes=count("count modes", role) > 0)


def _bank_token_row(token: BankToken, created_at: float) -> tuple[str | float | None, ...]:
    return (
        token.bank_transaction_ref,
        token.transaction_id,
        token.msisdn,
        token.amount,
        token.currency,
        token.account_number,
        token.bank_date_time,
        created_at,
    )


class Transaction:
    """Reads and writes inside one write transaction of either backend (SQLite's BEGIN IMMEDIATE,
    PostgreSQL's REPEATABLE READ or READ COMMITTED): what a decision (Storage.in_next_write) or the
    control API (Storage.write) is given. `db` is the backend's connection: `execute(query, values)`
    returns a cursor with `fetchone` and `rowcount`."""

    __slots__ = ("_conflict", "_db", "_sql")

    def __init__(self, db: Any, dialect: Dialect) -> None:
        self._db = db
        self._sql = dialect.statements
        self._conflict = dialect.conflict

    def _execute(self, name: str, values: Sequence[Any]) -> Any:
        return self._db.execute(self._sql[name], values)

    def _insert(self, name: str, values: Sequence[Any]) -> int:
        try:
            return int(self._execute(name, values).rowcount)
        except self._conflict as exc:
            raise StoreConflict(str(exc)) from exc

    # Bank mock
    def bank_token_by_transaction_id(self, transaction_id: str) -> BankToken | None:
        row = self._execute("bank_token_by_transaction_id", (transaction_id,)).fetchone()
        return BankToken(*row) if row else None

    def bank_token(self, bank_transaction_ref: str) -> BankToken | None:
        row = self._execute("bank_token", (bank_transaction_ref,)).fetchone()
        return BankToken(*row) if row else None

    def add_bank_token_once(self, token: BankToken, created_at: float) -> BankToken | None:
        """Adds `token` unless its TransactionID has one already, and then returns that one."""
        added = self._insert("add_bank_token_once", _bank_token_row(token, created_at))
        return None if added else self.bank_token_by_transaction_id(token.transaction_id)

    def add_bank_token(self, token: BankToken, created_at: float) -> None:
        self._insert("add_bank_token", _bank_token_row(token, created_at))

    # iPG mock
    def ipg_token(self, username: str, bank_transaction_ref: str) -> IpgToken | None:
        row = self._execute("ipg_token", (username, bank_transaction_ref)).fetchone()
        return IpgToken(*row) if row else None

    def add_ipg_token(self, token: IpgToken) -> None:
        self._insert(
            "add_ipg_token",
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
        row = self._execute("first_ipg_answer", (operation, username, duplicate_key)).fetchone()
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
        self._insert(
            "add_ipg_transaction",
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
        marked = "redeemed" if operation == "token_redemption" else "reversed"
        self._execute(marked, (at, token.username, token.bank_transaction_ref))

    # The proxy's ledger (proxy/ledger.py)
    def ledger_first_answer(
        self, role: str, scope: str, operation: str, duplicate_key: str
    ) -> FirstAnswer | None:
        """The first answer 0 the ledger saw to this duplicate set of `role`'s `operation` (`scope`: the
        bank username of an iPG call, "" for Token Generation), if any."""
        row = self._execute("ledger_first_answer", (duplicate_key, operation, scope, role)).fetchone()
        return FirstAnswer(*row) if row else None

    def ledger_add_answer(
        self,
        role: str,
        scope: str,
        operation: str,
        duplicate_key: str,
        *,
        reference: str | None,
        exchange_id: str,
        at: float,
    ) -> None:
        """Records the first answer 0 of a duplicate set; StoreConflict when a concurrent transaction
        recorded one first (PostgreSQL then decides again, and reads it)."""
        self._insert("ledger_add_answer", (duplicate_key, operation, scope, role, reference, exchange_id, at))

    def ledger_payments(self, scope: str, bank_transaction_ref: str) -> Payments:
        row = self._execute("ledger_payments", (bank_transaction_ref, scope)).fetchone()
        return Payments(*row) if row else Payments(None, None)

    def ledger_paid(
        self,
        scope: str,
        bank_transaction_ref: str,
        *,
        redeemed_by: str | None,
        reversed_by: str | None,
        at: float,
    ) -> None:
        """Records a redemption or reversal of the token answered 0, unless one was recorded before."""
        self._insert("ledger_paid", (bank_transaction_ref, scope, redeemed_by, reversed_by, at))

    def ledger_generation(self, bank_transaction_ref: str) -> Generation | None:
        row = self._execute("ledger_generation", (bank_transaction_ref,)).fetchone()
        if not row:
            return None
        reference, generated, *rest = row
        return Generation(reference, bool(generated), *rest)

    def ledger_add_generation(self, generation: Generation) -> None:
        """Records a reference a bank gave; a refusal's is kept only where no token has it."""
        self._insert(
            "ledger_add_generation",
            (
                generation.bank_transaction_ref,
                int(generation.generated),
                generation.transaction_id,
                generation.msisdn,
                generation.amount,
                generation.currency,
                generation.created_at,
                generation.exchange_id,
            ),
        )

    # Retention (mocks/retention.py)
    def remove_older(self, table: str, cutoff: float, limit: int) -> int:
        """Removes up to `limit` of the oldest rows of `table` (one of ROLE_TABLES's or LEDGER_TABLES's)
        created before `cutoff`; how many."""
        return int(self._execute(f"remove_older {table}", (cutoff, limit)).rowcount)
