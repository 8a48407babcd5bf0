"""The mocks' provider states (POST /_harness/provider-states), in process: each sets up exactly the
state its contract names, refuses what it cannot set up with the reason, and teardown resets."""

from __future__ import annotations

import pytest

from mpesa_atm.contracts import BANK, IPG, pacticipants
from mpesa_atm.contracts.generate import pact_dir, pact_file_name, read_pact
from mpesa_atm.mocks import provider_states
from mpesa_atm.mocks.provider_states import ProviderStates
from mpesa_atm.mocks.store import Store
from mpesa_atm.settings import DOCUMENT_BANK, BankAccount
from mpesa_atm.states import STATE_NAMES
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, DOCUMENT_REVERSAL, DOCUMENT_TOKEN
from tests.fixtures.tokens import seed_token

BANK_ACCOUNT = {"username": "fnb", "password": "P@ssword123", "shortcode": "49272"}
TOKEN = {**DOCUMENT_TOKEN, "username": "fnb"}
REF = DOCUMENT_TOKEN["bank_transaction_ref"]
TPR = DOCUMENT_REDEMPTION["input_ThirdPartyReference"]
# What the control API answers a state it cannot set up (mocks/control.py): as an unknown state.
UNKNOWN = 404  # no such state
UNSATISFIABLE = 409  # a known state that cannot be set up with these parameters


def state(client, name: str, params: dict | None = None, action: str = "setup"):
    return client.post(
        "/_harness/provider-states", json={"state": name, "params": params or {}, "action": action}
    )


def code(response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["output_ResponseCode"]


@pytest.mark.parametrize(("role", "provider"), [("ipg", IPG), ("bank", BANK)])
def test_the_states_the_pacts_name_are_exactly_those_the_mock_serves(role, provider, settings):
    consumer = BANK if provider == IPG else IPG
    pact = read_pact(pact_dir() / pact_file_name(consumer, provider))
    named = {s["name"] for i in pact["interactions"] for s in i["providerStates"]}
    store = Store(settings.db_path)
    served = ProviderStates(role, store, settings).names
    store.close()
    assert named == served == STATE_NAMES[role]


def test_the_contracts_and_the_mocks_spell_each_state_name_alike():
    names = [name for name in dir(pacticipants) if name.isupper() and name not in ("BANK", "IPG")]
    shared = [name for name in names if name != "PROVIDER_NAMES"]
    assert shared
    for name in shared:
        assert getattr(pacticipants, name) == getattr(provider_states, name), name


def test_a_token_exists_seeds_a_token_the_bank_can_redeem(mocks):
    assert state(mocks.ipg, "a token exists", TOKEN).status_code == 200
    assert code(mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)) == "0"


def test_a_token_exists_replaces_what_the_mock_held_before(mocks):
    seed_token(mocks.ipg)
    assert (
        code(
            mocks.ipg.post(
                "/token-redemption", json={**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "x1"}
            )
        )
        == "0"
    )
    assert state(mocks.ipg, "a token exists", TOKEN).status_code == 200
    # Not -1 "already redeemed", nor -3: the token is as the state names it, unused.
    assert code(mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)) == "0"


def test_the_redemption_was_already_made_makes_the_same_redemption_a_duplicate_of_it(mocks):
    state(mocks.ipg, "a token exists", TOKEN)
    made = state(
        mocks.ipg,
        "the redemption was already made",
        {"username": "fnb", "bank_transaction_ref": REF, "third_party_reference": TPR},
    )
    assert made.status_code == 200, made.text
    answer = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION).json()
    assert answer["output_ResponseCode"] == "-3"
    assert answer["output_InsightReference"] == made.json()["insight_reference"]


def test_the_reversal_was_already_made_makes_the_same_reversal_a_duplicate(mocks):
    state(mocks.ipg, "a token exists", TOKEN)
    made = state(
        mocks.ipg,
        "the reversal was already made",
        {"username": "fnb", "bank_transaction_ref": REF, "third_party_reference": TPR},
    )
    assert made.status_code == 200, made.text
    assert code(mocks.ipg.post("/token-reversal", json=DOCUMENT_REVERSAL)) == "-3"
    # A reversal with another reference of the bank: the token is reversed, not a duplicate.
    assert (
        code(mocks.ipg.post("/token-reversal", json={**DOCUMENT_REVERSAL, "input_ThirdPartyReference": "x2"}))
        == "-1"
    )


def test_a_state_that_builds_on_a_token_says_which_state_to_set_up_first(mocks):
    refused = state(
        mocks.ipg,
        "the redemption was already made",
        {"username": "fnb", "bank_transaction_ref": REF, "third_party_reference": TPR},
    )
    assert refused.status_code == UNSATISFIABLE
    assert "set up 'a token exists' before this state" in refused.json()["detail"]


def test_no_token_exists_makes_the_redemption_not_found(mocks):
    seed_token(mocks.ipg)
    assert (
        state(mocks.ipg, "no token exists", {"username": "fnb", "bank_transaction_ref": REF}).status_code
        == 200
    )
    assert code(mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)) == "-9"


def test_the_bank_is_registered_holds_for_the_configured_bank(mocks):
    assert state(mocks.ipg, "the bank is registered", BANK_ACCOUNT).json() == {}


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({**BANK_ACCOUNT, "username": "acme"}, "has no bank 'acme'"),
        ({**BANK_ACCOUNT, "password": "other"}, "has another password"),
        ({**BANK_ACCOUNT, "shortcode": "12345"}, "shortcode 12345 is not linked to 'fnb'"),
    ],
)
def test_the_bank_is_registered_is_refused_with_the_reason_when_the_mock_has_another_bank(
    mocks, params, reason
):
    refused = state(mocks.ipg, "the bank is registered", params)
    assert refused.status_code == UNSATISFIABLE
    assert reason in refused.json()["detail"]


def test_the_bank_is_registered_holds_for_a_bank_configured_with_a_password_hash(make_mocks):
    from mpesa_atm.passwords import hash_password

    bank = BankAccount(
        username="fnb", password_hash=hash_password("P@ssword123"), shortcodes=("1234", "49272")
    )
    assert state(make_mocks(banks=(bank,)).ipg, "the bank is registered", BANK_ACCOUNT).status_code == 200


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({k: v for k, v in TOKEN.items() if k != "msisdn"}, "needs the parameter(s) msisdn"),
        ({**TOKEN, "amount": 200}, "needs the parameter(s) amount"),
        ({**TOKEN, "amount": "lots"}, "amount 'lots' is not a number"),
        ({**TOKEN, "colour": "red"}, "has no parameter(s) colour"),
        ({**TOKEN, "username": "acme"}, "has no bank 'acme'"),
    ],
)
def test_a_state_with_parameters_it_cannot_use_is_refused_with_the_reason(mocks, params, reason):
    refused = state(mocks.ipg, "a token exists", params)
    assert refused.status_code == UNSATISFIABLE
    assert reason in refused.json()["detail"]


def test_an_unknown_state_is_refused_with_the_known_ones(mocks):
    refused = state(mocks.bank, "a token exists", TOKEN)
    assert refused.status_code == UNKNOWN
    detail = refused.json()["detail"]
    assert "no provider state 'a token exists'" in detail
    assert "a token was generated for the transaction" in detail


def test_teardown_forgets_what_the_state_set_up(mocks):
    state(mocks.ipg, "a token exists", TOKEN)
    assert state(mocks.ipg, "a token exists", TOKEN, action="teardown").status_code == 200
    assert code(mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)) == "-9"


# A second bank on the same iPG sandbox: the states of fnb's contract run must leave its tokens.
EQUITY = BankAccount(username="equity", password="S3cret!", shortcodes=("60001",))
EQUITY_TOKEN = {**DOCUMENT_TOKEN, "username": "equity"}
EQUITY_REDEMPTION = {
    **DOCUMENT_REDEMPTION,
    "input_Username": "equity",
    "input_Password": "S3cret!",
    "input_BankShortcode": "60001",
}


@pytest.fixture
def shared(make_mocks):
    """The iPG mock serving fnb and equity, equity holding the document's token and a fault rule
    that no call here matches."""
    mocks = make_mocks(banks=(DOCUMENT_BANK, EQUITY))
    assert mocks.ipg.post("/_harness/tokens", json=EQUITY_TOKEN).status_code == 201
    rule = {"response_code": "-7", "match": {"input_CustomerMSISDN": "243999999999"}}
    assert mocks.ipg.post("/_harness/faults", json=rule).status_code == 201
    return mocks


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("a token exists", TOKEN),
        ("no token exists", {"username": "fnb", "bank_transaction_ref": REF}),
    ],
)
def test_a_state_of_one_bank_leaves_the_other_banks_token_and_the_fault_rules(shared, name, params):
    assert state(shared.ipg, name, params).status_code == 200
    assert state(shared.ipg, name, params, action="teardown").status_code == 200
    assert len(shared.ipg.get("/_harness/faults").json()["faults"]) == 1
    assert code(shared.ipg.post("/token-redemption", json=EQUITY_REDEMPTION)) == "0"


def test_a_state_of_one_bank_forgets_that_banks_redemptions(shared):
    seed_token(shared.ipg)
    assert code(shared.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)) == "0"
    state(shared.ipg, "no token exists", {"username": "fnb", "bank_transaction_ref": REF})
    seed_token(shared.ipg)
    # Not -3: the first redemption went with the state's reset of fnb.
    assert code(shared.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)) == "0"


def test_teardown_with_no_username_forgets_every_bank_and_the_fault_rules(shared):
    assert state(shared.ipg, "a token exists", {}, action="teardown").status_code == 200
    assert shared.ipg.get("/_harness/faults").json() == {"faults": []}
    assert code(shared.ipg.post("/token-redemption", json=EQUITY_REDEMPTION)) == "-9"


def test_teardown_with_a_username_that_is_not_a_string_is_refused_and_forgets_nothing(shared):
    refused = state(shared.ipg, "a token exists", {"username": 7}, action="teardown")
    assert refused.status_code == UNSATISFIABLE
    assert "username must be a non-empty string" in refused.json()["detail"]
    assert code(shared.ipg.post("/token-redemption", json=EQUITY_REDEMPTION)) == "0"


def test_a_token_was_generated_makes_the_same_generation_a_duplicate_with_its_reference(mocks):
    params = {
        "transaction_id": "BVA12369A",
        "msisdn": "243843330333",
        "amount": "200",
        "currency": "CDF",
        "account_number": "85000001222840",
    }
    made = state(mocks.bank, "a token was generated for the transaction", params)
    assert made.status_code == 200, made.text
    answer = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert answer["output_ResponseCode"] == "-3"
    assert answer["output_BankTransactionRef"] == made.json()["bank_transaction_ref"]
    assert answer["output_BankDateTime"] == made.json()["bank_date_time"]


def test_no_token_was_generated_lets_the_transaction_get_a_new_token(mocks):
    assert code(mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION)) == "0"
    assert (
        state(
            mocks.bank, "no token was generated for the transaction", {"transaction_id": "BVA12369A"}
        ).status_code
        == 200
    )
    assert code(mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION)) == "0"
