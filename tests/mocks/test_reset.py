"""Resets on a shared iPG sandbox: POST /_harness/reset?username=<bank> forgets that bank's tokens and
transactions only; without a username the mock forgets everything, as before."""

from __future__ import annotations

import asyncio

import pytest

from mpesa_atm.mocks.store import Store
from mpesa_atm.settings import DOCUMENT_BANK, BankAccount
from mpesa_atm.spec import load_spec
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.tokens import redeem, seed_token

EQUITY = BankAccount(username="equity", password="S3cret!", shortcodes=("60001",))
EQUITY_REDEMPTION = {
    **DOCUMENT_REDEMPTION,
    "input_Username": "equity",
    "input_Password": "S3cret!",
    "input_BankShortcode": "60001",
}
# A rule no call of these tests matches: it must outlive a bank's reset, not change its answers.
IDLE_RULE = {"response_code": "-7", "match": {"input_CustomerMSISDN": "243999999999"}}


@pytest.fixture
def shared(make_mocks):
    """An iPG mock serving fnb and equity, each with the document's token, fnb's redeemed, and a
    fault rule and a mode set."""
    mocks = make_mocks(banks=(DOCUMENT_BANK, EQUITY))
    for username in ("fnb", "equity"):
        seed_token(mocks.ipg, username=username)
    assert code(mocks.ipg, DOCUMENT_REDEMPTION) == "0"
    assert mocks.ipg.post("/_harness/faults", json=IDLE_RULE).status_code == 201
    assert mocks.ipg.put("/_harness/modes", json={"max_concurrency": 50}).status_code == 200
    return mocks


def code(ipg, body) -> str:
    """The response code of a redemption with `body`."""
    return redeem(ipg, **body)["output_ResponseCode"]


def test_reset_of_one_bank_leaves_the_other_banks_token_redeemable(shared):
    response = shared.ipg.post("/_harness/reset", params={"username": "fnb"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "reset": "ipg",
        "username": "fnb",
        "scope": "fnb's tokens and transactions; other banks, fault rules, modes and the journal kept",
    }
    assert code(shared.ipg, EQUITY_REDEMPTION) == "0"
    assert code(shared.ipg, DOCUMENT_REDEMPTION) == "-9"  # fnb's token is forgotten


def test_reset_of_one_bank_forgets_its_transactions(shared):
    shared.ipg.post("/_harness/reset", params={"username": "fnb"})
    seed_token(shared.ipg)
    # The same redemption again: with the first one remembered it would be -3 (a duplicate).
    assert code(shared.ipg, DOCUMENT_REDEMPTION) == "0"


def test_reset_of_one_bank_keeps_fault_rules_modes_and_the_journal(shared):
    journal_before = shared.ipg.get("/_harness/journal").json()["entries"]
    shared.ipg.post("/_harness/reset", params={"username": "fnb"})
    (rule,) = shared.ipg.get("/_harness/faults").json()["faults"]
    assert (rule["response_code"], rule["match"]) == ("-7", IDLE_RULE["match"])
    assert shared.ipg.get("/_harness/modes").json()["max_concurrency"] == 50
    assert shared.ipg.get("/_harness/journal").json()["entries"] == journal_before


def test_reset_of_an_unknown_bank_is_404_and_forgets_nothing(shared):
    response = shared.ipg.post("/_harness/reset", params={"username": "ghost"})
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "detail": "no bank 'ghost' is configured"}
    assert code(shared.ipg, EQUITY_REDEMPTION) == "0"


def test_a_username_longer_than_input_username_allows_is_400(shared):
    assert shared.ipg.post("/_harness/reset", params={"username": "x" * 65}).status_code == 400


def test_the_bank_mock_refuses_a_username_and_keeps_its_tokens(shared):
    first = shared.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    response = shared.bank.post("/_harness/reset", params={"username": "fnb"})
    assert response.status_code == 400
    assert set(response.json()) == {"error", "detail"}
    again = shared.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert (again["output_ResponseCode"], again["output_BankTransactionRef"]) == (
        "-3",
        first["output_BankTransactionRef"],
    )


def test_full_reset_forgets_every_banks_tokens_the_rules_modes_and_journal(shared):
    response = shared.ipg.post("/_harness/reset")
    assert response.json() == {
        "reset": "ipg",
        "scope": "everything: tokens, transactions, fault rules, modes, the journal",
    }
    assert shared.ipg.get("/_harness/faults").json() == {"faults": []}
    assert shared.ipg.get("/_harness/modes").json()["max_concurrency"] is None
    assert shared.ipg.get("/_harness/journal").json()["entries"] == []
    assert code(shared.ipg, EQUITY_REDEMPTION) == "-9"
    assert code(shared.ipg, DOCUMENT_REDEMPTION) == "-9"


def test_full_reset_of_the_bank_mock_says_what_it_forgot(mocks):
    assert mocks.bank.post("/_harness/reset").json() == {
        "reset": "bank",
        "scope": "everything: tokens, fault rules, modes, the journal",
    }


def test_the_store_refuses_a_username_for_the_bank_role(settings):
    store = Store(settings.db_path)
    try:
        with pytest.raises(ValueError, match="belongs to no bank username"):
            asyncio.run(store.reset("bank", username="fnb"))
    finally:
        store.close()


def test_only_the_ipg_control_document_has_the_username_of_a_reset():
    ipg = load_spec("control.yaml", role="ipg")["paths"]["/reset"]["post"]
    (parameter,) = ipg["parameters"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == ("username", "query", False)
    assert "404" in ipg["responses"]
    bank = load_spec("control.yaml", role="bank")["paths"]["/reset"]["post"]
    assert bank["parameters"] == []
    assert "404" not in bank["responses"]
