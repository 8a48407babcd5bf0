"""`mpesa-atm serve` says what its store kept from an earlier run, and `--fresh` starts it empty (a
PostgreSQL store, shared by other instances, only with `--yes`)."""

from __future__ import annotations

import asyncio

import httpx

from mpesa_atm.cli import main
from mpesa_atm.mocks.records import BankToken, Kept
from mpesa_atm.mocks.storage import Transaction, open_store
from tests.fixtures.mocks import DOCUMENT_GENERATION

_KEPT = "kept from an earlier run"


def _generate(bank_url: str) -> str:
    """The document's Token Generation example; its answer's code."""
    answer = httpx.post(f"{bank_url}/token-generation", json=DOCUMENT_GENERATION, timeout=10)
    assert answer.status_code == 200, answer.text
    code: str = answer.json()["output_ResponseCode"]
    return code


def _counts(db: str, role: str) -> Kept:
    store = open_store(db)
    try:
        return asyncio.run(store.counts(role))
    finally:
        store.close()


def _seed_bank_token(db: str) -> None:
    token = BankToken("A" * 32, "TX1", "243843330333", "200", "CDF", None, "20261207 080000")

    def add(tx: Transaction) -> None:
        tx.add_bank_token(token, 0.0)

    store = open_store(db)
    try:
        asyncio.run(store.write(add))
    finally:
        store.close()


def test_a_restarted_mock_says_what_it_kept_and_fresh_starts_it_empty(serve):
    first = serve()
    assert _KEPT not in first.log()
    assert _generate(first.bank_url) == "0"
    rule = {"response_code": "-2", "match": {"input_CustomerMSISDN": "243800000000"}}
    assert httpx.post(f"{first.bank_url}/_harness/faults", json=rule).status_code == 201
    assert httpx.put(f"{first.ipg_url}/_harness/modes", json={"magic_values": False}).status_code == 200
    first.stop()

    again = serve()
    log = again.log()
    assert (
        f"  {_KEPT}: 1 token, 1 fault rule; to start clean: serve --fresh,"
        f" or POST {again.bank_url}/_harness/reset\n"
    ) in log, log
    assert f"  {_KEPT}: modes; to start clean: serve --fresh, or POST {again.ipg_url}/_harness/reset" in log
    assert _generate(again.bank_url) == "-3"  # what the banner warns of: the example is a duplicate now
    again.stop()

    fresh = serve("--fresh")
    assert _KEPT not in fresh.log(), fresh.log()
    assert _generate(fresh.bank_url) == "0"
    assert httpx.get(f"{fresh.bank_url}/_harness/faults").json()["faults"] == []
    assert httpx.get(f"{fresh.ipg_url}/_harness/modes").json()["magic_values"] is True


def test_fresh_with_one_role_empties_that_roles_store_only(serve, tmp_path):
    db = str(tmp_path / "served.sqlite3")
    _seed_bank_token(db)
    store = open_store(db)
    asyncio.run(store.modes_set("ipg", {"offline": True}))
    store.close()

    served = serve("--fresh", role="bank", db_path=db)

    assert _KEPT not in served.log(), served.log()
    assert _counts(db, "bank") == Kept()
    assert _counts(db, "ipg") == Kept(modes=True)


def test_fresh_on_a_postgresql_store_is_refused_without_yes_and_empties_it_with(serve, postgres_url, capsys):
    _seed_bank_token(postgres_url)

    assert main(["serve", "bank", "--port", "0", "--db", postgres_url, "--fresh"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"mpesa-atm: error: --fresh would empty {postgres_url} for every instance that shares it:"
        " add --yes if that is meant\n"
    )
    assert _counts(postgres_url, "bank") == Kept(tokens=1)

    kept = serve(role="bank", db_path=postgres_url)
    assert f"{_KEPT}: 1 token; to start clean: serve --fresh --yes, or POST" in kept.log(), kept.log()
    kept.stop()

    fresh = serve("--fresh", "--yes", role="bank", db_path=postgres_url)
    assert _KEPT not in fresh.log(), fresh.log()
    assert _counts(postgres_url, "bank") == Kept()
