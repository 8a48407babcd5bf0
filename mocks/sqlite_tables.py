"""The tables of the SQLite store (mocks/store.py) and its dialect of the shared statements
(mocks/statements.py); mocks/pg_tables.py holds the same tables in PostgreSQL's types."""

from __future__ import annotations

import sqlite3

from mpesa_atm.mocks.statements import Dialect

__all__ = ["SCHEMA", "SQLITE"]

SCHEMA = """
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
-- The proxy's ledger (proxy/ledger.py): what it saw the upstreams answer, so that every worker of
-- every proxy on this file judges a repeat, a token paid twice, by the same history.
CREATE TABLE IF NOT EXISTS ledger_answers (
    duplicate_key TEXT NOT NULL,
    operation TEXT NOT NULL,
    scope TEXT NOT NULL,
    role TEXT NOT NULL,
    reference TEXT,
    exchange_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (duplicate_key, operation, scope, role)
);
CREATE TABLE IF NOT EXISTS ledger_tokens (
    bank_transaction_ref TEXT NOT NULL,
    scope TEXT NOT NULL,
    redeemed_by TEXT,
    reversed_by TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (bank_transaction_ref, scope)
);
CREATE TABLE IF NOT EXISTS ledger_generations (
    bank_transaction_ref TEXT PRIMARY KEY,
    generated INTEGER NOT NULL,
    transaction_id TEXT NOT NULL,
    msisdn TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at REAL NOT NULL,
    exchange_id TEXT NOT NULL
);
"""


# SQLite's statements (mocks/statements.py): the oldest rows by rowid, without an index on
# created_at to keep up on every write; a row goes only when its own created_at is past the cutoff.
SQLITE = Dialect(
    placeholder="?",
    conflict=sqlite3.IntegrityError,
    # Plain placeholders in the order given: Python 3.12 deprecates numbered ones (?1) bound to a
    # sequence. The same query plan as with the subquery first (EXPLAIN QUERY PLAN).
    remove_older=(
        "DELETE FROM {table} WHERE created_at < ?"
        " AND rowid IN (SELECT rowid FROM {table} ORDER BY rowid LIMIT ?)"
    ),
)
