"""The iPG mock's Token Redemption and Token Reversal rules (document section 2), over HTTP in process."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from mpesa_atm.mocks.values import new_insight_reference
from mpesa_atm.passwords import hash_password
from mpesa_atm.settings import DOCUMENT_BANK, BankAccount
from tests.fixtures.mocks import DOCUMENT_REDEMPTION, DOCUMENT_REVERSAL
from tests.fixtures.tokens import redeem, seed_token


def reverse(mocks, **changes):
    body = {**DOCUMENT_REVERSAL, "input_ThirdPartyReference": "rev-1", **changes}
    return mocks.ipg.post("/token-reversal", json=body).json()


def test_document_redemption_of_a_generated_token_is_success(seeded):
    answer = redeem(seeded.ipg)
    assert answer["output_ResponseCode"] == "0"
    assert answer["output_ResponseDesc"] == "Success"
    assert answer["output_InsightReference"]
    assert answer["output_ThirdPartyReference"] == "71c6d1f93910052de053"


def test_replayed_redemption_returns_duplicate_with_first_reference(seeded):
    first = redeem(seeded.ipg)
    again = redeem(seeded.ipg)
    assert again["output_ResponseCode"] == "-3"
    assert again["output_InsightReference"] == first["output_InsightReference"]
    assert again["output_ThirdPartyReference"] == first["output_ThirdPartyReference"]


def test_replay_with_the_amount_written_differently_is_still_duplicate(seeded):
    first = redeem(seeded.ipg)
    again = redeem(seeded.ipg, input_Amount="200.00")
    assert (again["output_ResponseCode"], again["output_InsightReference"]) == (
        "-3",
        first["output_InsightReference"],
    )


def test_second_redemption_with_another_reference_is_refused_no_double_spend(seeded):
    redeem(seeded.ipg)
    second = redeem(seeded.ipg, input_ThirdPartyReference="another-atm-ref")
    assert second["output_ResponseCode"] == "-1"
    assert "already redeemed" in second["output_ResponseDesc"]
    assert second["output_ThirdPartyReference"] == "another-atm-ref"


@pytest.mark.parametrize(
    "credentials",
    [{"input_Username": "nobody"}, {"input_Password": "wrong"}, {"input_Password": "p@ssword123"}],
)
def test_unknown_username_or_wrong_password_is_authentication_failed(seeded, credentials):
    answer = redeem(seeded.ipg, **credentials)
    assert answer["output_ResponseCode"] == "-4"
    assert answer["output_ResponseDesc"] == "Authentication Failed"


def test_authentication_comes_before_everything_about_tokens(mocks):
    answer = redeem(mocks.ipg, input_Password="wrong", input_BankTransactionRef="unknown")
    assert answer["output_ResponseCode"] == "-4"


def test_shortcode_not_linked_to_the_bank_is_bank_details_invalid(seeded):
    answer = redeem(seeded.ipg, input_BankShortcode="11111")
    assert answer["output_ResponseCode"] == "-5"
    assert "11111" in answer["output_ResponseDesc"]


def test_shortcode_check_comes_before_the_duplicate_check(seeded):
    redeem(seeded.ipg)
    assert redeem(seeded.ipg, input_BankShortcode="11111")["output_ResponseCode"] == "-5"


def test_unknown_token_is_transaction_details_not_found(mocks):
    answer = redeem(mocks.ipg)
    assert answer["output_ResponseCode"] == "-9"
    assert "input_BankTransactionRef" in answer["output_ResponseDesc"]


def test_token_is_found_for_48_hours_and_not_a_second_more(seeded, clock):
    clock.advance(hours=48)
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"
    clock.advance(seconds=1)
    assert reverse(seeded)["output_ResponseCode"] == "-9"


def test_token_older_than_two_days_is_not_found(seeded, clock):
    clock.advance(days=2, seconds=1)
    assert redeem(seeded.ipg)["output_ResponseCode"] == "-9"


def test_token_window_follows_the_configured_hours(make_mocks, clock):
    mocks = make_mocks(token_ttl=timedelta(hours=1))
    seed_token(mocks.ipg)
    clock.advance(hours=1, seconds=1)
    answer = redeem(mocks.ipg)
    assert answer["output_ResponseCode"] == "-9"
    assert "last 1 hours" in answer["output_ResponseDesc"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_CustomerMSISDN": "243843330334"}, "input_CustomerMSISDN"),
        ({"input_Amount": "201"}, "input_Amount"),
        ({"input_Currency": "USD"}, "input_Currency"),
    ],
)
def test_details_differing_from_the_token_are_failure_naming_the_field(seeded, change, field):
    answer = redeem(seeded.ipg, **change)
    assert answer["output_ResponseCode"] == "-1"
    assert field in answer["output_ResponseDesc"]
    assert "does not match the token" in answer["output_ResponseDesc"]


def test_refused_redemption_is_evaluated_again_when_retried(seeded):
    assert redeem(seeded.ipg, input_Password="wrong")["output_ResponseCode"] == "-4"
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"


def test_token_of_another_bank_is_not_found(make_mocks):
    other = BankAccount(username="equity", password="S3cret!", shortcodes=("60001",))
    mocks = make_mocks(banks=(DOCUMENT_BANK, other))
    seed_token(mocks.ipg, username="equity")
    assert redeem(mocks.ipg)["output_ResponseCode"] == "-9"
    answer = redeem(mocks.ipg, input_Username="equity", input_Password="S3cret!", input_BankShortcode="60001")
    assert answer["output_ResponseCode"] == "0"


def test_bank_configured_with_a_password_hash_authenticates(make_mocks):
    hashed = BankAccount(username="fnb", password_hash=hash_password("P@ssword123"), shortcodes=("49272",))
    mocks = make_mocks(banks=(hashed,))
    seed_token(mocks.ipg)
    assert redeem(mocks.ipg, input_Password="wrong")["output_ResponseCode"] == "-4"
    assert redeem(mocks.ipg)["output_ResponseCode"] == "0"


# Token Reversal


def test_reversal_of_an_unredeemed_token_is_success(seeded):
    answer = reverse(seeded)
    assert answer["output_ResponseCode"] == "0"
    assert answer["output_ThirdPartyReference"] == "rev-1"


def test_redeemed_token_may_still_be_reversed_once(seeded):
    redeem(seeded.ipg)
    assert reverse(seeded)["output_ResponseCode"] == "0"
    again = reverse(seeded, input_ThirdPartyReference="rev-2")
    assert again["output_ResponseCode"] == "-1"
    assert "already reversed" in again["output_ResponseDesc"]


def test_replayed_reversal_returns_duplicate_with_first_reference(seeded):
    first = reverse(seeded)
    again = reverse(seeded)
    assert again["output_ResponseCode"] == "-3"
    assert again["output_InsightReference"] == first["output_InsightReference"]


def test_reversed_token_cannot_be_redeemed(seeded):
    reverse(seeded)
    answer = redeem(seeded.ipg)
    assert answer["output_ResponseCode"] == "-1"
    assert "already reversed" in answer["output_ResponseDesc"]


def test_reversal_quoting_another_transaction_id_is_not_found(seeded):
    answer = reverse(seeded, input_TransactionID="ZZZ99999Z")
    assert answer["output_ResponseCode"] == "-9"
    assert "input_TransactionID" in answer["output_ResponseDesc"]


def test_reversal_of_an_unknown_token_is_not_found(mocks):
    assert reverse(mocks)["output_ResponseCode"] == "-9"


@pytest.mark.parametrize(
    ("credentials", "code"),
    [({"input_Password": "wrong"}, "-4"), ({"input_BankShortcode": "11111"}, "-5")],
)
def test_reversal_checks_credentials_and_shortcode(seeded, credentials, code):
    assert reverse(seeded, **credentials)["output_ResponseCode"] == code


def test_reversal_with_differing_amount_is_failure(seeded):
    answer = reverse(seeded, input_Amount="150")
    assert answer["output_ResponseCode"] == "-1"
    assert "input_Amount" in answer["output_ResponseDesc"]


# Requests the iPG cannot read


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"input_Amount": 200}, "input_Amount"),
        ({"input_ThirdPartyReference": "x" * 33}, "input_ThirdPartyReference"),
        ({"input_CustomerMSISDN": "٢٤٣٨٤٣٣٣٠٣٣٣"}, "input_CustomerMSISDN"),
        ({"input_Amount": "1e3"}, "input_Amount"),
        ({"input_BankShortcode": None}, "input_BankShortcode"),
        ({"input_Unknown": "x"}, "input_Unknown"),
    ],
)
def test_invalid_redemption_is_400_failure_naming_the_field(seeded, change, named):
    response = seeded.ipg.post("/token-redemption", json={**DOCUMENT_REDEMPTION, **change})
    assert response.status_code == 400
    answer = response.json()
    assert answer["output_ResponseCode"] == "-1"
    assert named in answer["output_ResponseDesc"]
    assert answer["output_InsightReference"]


def test_invalid_request_echoes_a_readable_third_party_reference(mocks):
    body = {**DOCUMENT_REDEMPTION, "input_Amount": 200}
    assert mocks.ipg.post("/token-redemption", json=body).json()["output_ThirdPartyReference"] == (
        "71c6d1f93910052de053"
    )
    body = {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": 5}
    assert mocks.ipg.post("/token-redemption", json=body).json()["output_ThirdPartyReference"] == ""


def test_missing_field_is_named(mocks):
    body = {k: v for k, v in DOCUMENT_REVERSAL.items() if k != "input_TransactionID"}
    response = mocks.ipg.post("/token-reversal", json=body)
    assert response.status_code == 400
    assert "input_TransactionID missing" in response.json()["output_ResponseDesc"]


def test_insight_references_are_in_the_order_they_were_made():
    """So that the store's index on them grows at one end (mocks/values.py)."""
    made = [new_insight_reference() for _ in range(1000)]
    assert [ref[:8] for ref in made] == sorted(ref[:8] for ref in made)  # by their millisecond
    assert len(set(made)) == 1000
    assert all(re.fullmatch(r"[0-9a-z]{19}", ref) for ref in made)
