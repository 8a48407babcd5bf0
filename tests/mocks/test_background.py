"""The store's background threads tell the errors they do not expect, once per kind, and go on."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from mpesa_atm.mocks.background import OncePerKind
from tests.fixtures.servers import wait_for


def test_an_error_is_logged_the_first_time_of_its_kind_only(caplog):
    errors = OncePerKind("the poller")
    for error in (ValueError("a"), ValueError("a"), ValueError("b"), KeyError("a"), ValueError("a")):
        errors.log(error)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "the poller failed (logged once): a"),
        (logging.ERROR, "the poller failed (logged once): b"),
        (logging.ERROR, "the poller failed (logged once): 'a'"),
    ]


def test_the_config_poller_logs_what_it_did_not_expect_and_still_sees_changes(
    postgres_url, monkeypatch, caplog
):
    pg_store = pytest.importorskip("mpesa_atm.mocks.pg_store")  # the postgres extra
    first, second = pg_store.PostgresStore(postgres_url), pg_store.PostgresStore(postgres_url)
    read = pg_store._config_version
    failures = [TypeError("a bug of the poller")] * 3

    def failing(conn):
        if failures and threading.current_thread() is second._poller:
            raise failures.pop()
        return read(conn)

    monkeypatch.setattr(pg_store, "_config_version", failing)
    try:
        seen = asyncio.run(second.config_version())
        asyncio.run(first.modes_set("ipg", {"offline": True}))
        wait_for(
            lambda: asyncio.run(second.config_version()) != seen, "the other store sees the change", timeout=5
        )
    finally:
        first.close()
        second.close()
    assert not failures
    messages = [r.getMessage() for r in caplog.records if r.name == "mpesa_atm.mocks"]
    assert (
        messages.count(f"the config poller of {second.label} failed (logged once): a bug of the poller") == 1
    )
