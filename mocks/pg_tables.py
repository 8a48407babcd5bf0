"""The tables of the PostgreSQL store (mocks/pg_store.py) and its dialect of the shared statements
(mocks/statements.py): the SQLite store's tables (mocks/sqlite_tables.py) in PostgreSQL's types, with an
index on `created_at` for retention, and the tables that hold on the database what SQLite's workers
share in a lock file (the config version, calls under way) and the journal."""

from __future__ import annotations

import psycopg.errors

from mpesa_atm.mocks.statements import Dialect

__all__ = ["POSTGRES", "SCHEMA", "SCHEMA_LOCK", "SCHEMA_PRESENT"]

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
-- The proxy's ledger (proxy/ledger.py). Last, so that a database made before it gets it: SCHEMA_PRESENT
-- reads the last object.
CREATE TABLE IF NOT EXISTS ledger_answers (
    duplicate_key text NOT NULL,
    operation text NOT NULL,
    scope text NOT NULL,
    role text NOT NULL,
    reference text,
    exchange_id text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (duplicate_key, operation, scope, role)
);
CREATE INDEX IF NOT EXISTS ledger_answers_created_at ON ledger_answers (created_at);
CREATE TABLE IF NOT EXISTS ledger_tokens (
    bank_transaction_ref text NOT NULL,
    scope text NOT NULL,
    redeemed_by text,
    reversed_by text,
    created_at double precision NOT NULL,
    PRIMARY KEY (bank_transaction_ref, scope)
);
CREATE INDEX IF NOT EXISTS ledger_tokens_created_at ON ledger_tokens (created_at);
CREATE TABLE IF NOT EXISTS ledger_generations (
    bank_transaction_ref text PRIMARY KEY,
    generated integer NOT NULL,
    transaction_id text NOT NULL,
    msisdn text NOT NULL,
    amount text NOT NULL,
    currency text NOT NULL,
    created_at double precision NOT NULL,
    exchange_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_generations_created_at ON ledger_generations (created_at);
"""
# True once SCHEMA was made: its last object (SCHEMA runs in one transaction, all or nothing).
SCHEMA_PRESENT = "SELECT to_regclass('ledger_generations_created_at') IS NOT NULL"


# PostgreSQL's statements (mocks/statements.py): the oldest rows by created_at's index.
POSTGRES = Dialect(
    placeholder="%s",
    conflict=psycopg.errors.UniqueViolation,
    remove_older=(
        "DELETE FROM {table} WHERE ctid = ANY (ARRAY("
        "SELECT ctid FROM {table} WHERE created_at < ? ORDER BY created_at LIMIT ?))"
    ),
)
