"""The tables of the PostgreSQL store and the transaction on them (mocks/pg_store.py): the SQLite
store's tables (mocks/store.py) in PostgreSQL's types, with an index on `created_at` for retention,
and the tables that hold on the database what SQLite's workers share in a lock file (the config
version, calls under way) and the journal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors

from mpesa_atm.errors import StoreConflict
from mpesa_atm.mocks.store import BankToken, IpgToken

__all__ = ["SCHEMA", "SCHEMA_LOCK", "SCHEMA_PRESENT", "PostgresTransaction"]

SCHEMA_LOCK = 0x6D706573  # pg_advisory_xact_lock key: one instance creates the tables at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS bank_tokens (
    bank_transaction_ref text PRIMARY KEY,
    transaction_id text NOT NULL UNIQUE,
    msisdn text NOT NULL,
    amount text NOT NULL,
    currency text NOT NULL,
    account_number text,
    bank_date_time text NOT NULL,
    created_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS bank_tokens_created_at ON bank_tokens (created_at);
CREATE TABLE IF NOT EXISTS ipg_tokens (
    username text NOT NULL,
    bank_transaction_ref text NOT NULL,
    transaction_id text NOT NULL,
    msisdn text NOT NULL,
    amount text NOT NULL,
    currency text NOT NULL,
    created_at double precision NOT NULL,
    redeemed_at double precision,
    reversed_at double precision,
    PRIMARY KEY (username, bank_transaction_ref)
);
CREATE INDEX IF NOT EXISTS ipg_tokens_created_at ON ipg_tokens (created_at);
CREATE TABLE IF NOT EXISTS ipg_transactions (
    insight_reference text PRIMARY KEY,
    operation text NOT NULL,
    username text NOT NULL,
    duplicate_key text NOT NULL,
    bank_transaction_ref text NOT NULL,
    third_party_reference text NOT NULL,
    created_at double precision NOT NULL,
    -- The selective column first: a duplicate check reads the first index alone (on a new table,
    -- without statistics, the planner took the second for it and filtered a bank's transactions).
    UNIQUE (duplicate_key, operation, username),
    UNIQUE (bank_transaction_ref, operation, username)
);
CREATE INDEX IF NOT EXISTS ipg_transactions_created_at ON ipg_transactions (created_at);
CREATE TABLE IF NOT EXISTS faults (
    id text PRIMARY KEY,
    role text NOT NULL,
    spec text NOT NULL,
    remaining bigint,
    created_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS modes (
    role text PRIMARY KEY,
    modes jsonb NOT NULL
);
-- Moves with every change of fault rules or modes: what the workers poll (POLL_SECONDS).
CREATE TABLE IF NOT EXISTS harness_config (
    id integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO harness_config VALUES (1, 0) ON CONFLICT DO NOTHING;
-- Calls under way in all workers of all instances, counted only under max_concurrency.
CREATE TABLE IF NOT EXISTS calls_in_flight (
    role text PRIMARY KEY,
    count integer NOT NULL
);
INSERT INTO calls_in_flight VALUES ('bank', 0), ('ipg', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS journal (
    id bigserial PRIMARY KEY,
    role text NOT NULL,
    at text NOT NULL,
    direction text NOT NULL,
    operation text,
    method text NOT NULL,
    url text NOT NULL,
    status integer,
    request text NOT NULL,
    response text NOT NULL,
    duration_ms double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_role_id ON journal (role, id);
"""
# True once SCHEMA was made: its last object (SCHEMA runs in one transaction, all or nothing).
SCHEMA_PRESENT = "SELECT to_regclass('journal_role_id') IS NOT NULL"


class PostgresTransaction:
    """Reads and writes inside one transaction (the methods of mocks/storage.Transaction)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def _insert(self, query: str, values: Sequence[Any]) -> int:
        try:
            return self._conn.execute(query, values).rowcount
        except psycopg.errors.UniqueViolation as exc:
            raise StoreConflict(exc.diag.message_detail or str(exc)) from exc

    # Bank mock
    def bank_token_by_transaction_id(self, transaction_id: str) -> BankToken | None:
        return self._bank_token_where("transaction_id", transaction_id)

    def bank_token(self, bank_transaction_ref: str) -> BankToken | None:
        return self._bank_token_where("bank_transaction_ref", bank_transaction_ref)

    def _bank_token_where(self, column: str, value: str) -> BankToken | None:
        # `column` is one of the two unique columns above, never the caller's text.
        row = self._conn.execute(
            "SELECT bank_transaction_ref, transaction_id, msisdn, amount, currency, account_number,"
            f" bank_date_time FROM bank_tokens WHERE {column} = %s",
            (value,),
        ).fetchone()
        return BankToken(*row) if row else None

    def add_bank_token_once(self, token: BankToken, created_at: float) -> BankToken | None:
        """Adds `token` unless its TransactionID has one already, and then returns that one. A
        concurrent INSERT of the same TransactionID waits for the first to commit, then adds nothing
        and reads it."""
        added = self._insert(
            "INSERT INTO bank_tokens VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (transaction_id) DO NOTHING",
            (*_bank_token_row(token), created_at),
        )
        return None if added else self.bank_token_by_transaction_id(token.transaction_id)

    def add_bank_token(self, token: BankToken, created_at: float) -> None:
        self._insert(
            "INSERT INTO bank_tokens VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (*_bank_token_row(token), created_at),
        )

    # iPG mock
    def ipg_token(self, username: str, bank_transaction_ref: str) -> IpgToken | None:
        row = self._conn.execute(
            "SELECT username, bank_transaction_ref, transaction_id, msisdn, amount, currency,"
            " created_at, redeemed_at, reversed_at FROM ipg_tokens"
            " WHERE username = %s AND bank_transaction_ref = %s",
            (username, bank_transaction_ref),
        ).fetchone()
        return IpgToken(*row) if row else None

    def add_ipg_token(self, token: IpgToken) -> None:
        self._insert(
            "INSERT INTO ipg_tokens VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
        row = self._conn.execute(
            "SELECT insight_reference FROM ipg_transactions"
            " WHERE operation = %s AND username = %s AND duplicate_key = %s",
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
        """Records the success; StoreConflict when a concurrent transaction committed the same
        duplicate key, or the same operation on the token, first."""
        self._insert(
            "INSERT INTO ipg_transactions VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        self._conn.execute(
            f"UPDATE ipg_tokens SET {column} = %s WHERE username = %s AND bank_transaction_ref = %s",
            (at, token.username, token.bank_transaction_ref),
        )

    # Retention (mocks/retention.py)
    def remove_older(self, table: str, cutoff: float, limit: int) -> int:
        """Removes up to `limit` of the oldest rows created before `cutoff`; how many. `table` is
        the caller's constant."""
        return self._conn.execute(
            f"DELETE FROM {table} WHERE ctid = ANY (ARRAY("
            f"SELECT ctid FROM {table} WHERE created_at < %s ORDER BY created_at LIMIT %s))",
            (cutoff, limit),
        ).rowcount


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
