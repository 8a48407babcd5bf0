"""The bank mock's Token Generation rules (document section 3), driven over HTTP in process."""

from __future__ import annotations

import os
import random
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref
from tests.fixtures.mocks import DOCUMENT_GENERATION


def generate(mocks, **changes):
    return mocks.bank.post("/token-generation", json={**DOCUMENT_GENERATION, **changes})


def test_document_example_is_answered_success_with_new_reference_and_bank_time(mocks, clock):
    response = generate(mocks)
    assert response.status_code == 200
    body = response.json()
    assert body["output_ResponseCode"] == "0"
    assert body["output_ResponseDesc"] == "Success"
    assert re.fullmatch(r"[0-9a-f]{32}", body["output_BankTransactionRef"])
    assert body["output_BankDateTime"] == "20190611 223210"  # the fake clock's moment, UTC


def test_bank_date_time_is_in_the_configured_time_zone(make_mocks):
    mocks = make_mocks(timezone="Africa/Kinshasa")  # UTC+1
    assert generate(mocks).json()["output_BankDateTime"] == "20190611 233210"


def test_references_are_unique(mocks):
    refs = {
        generate(mocks, input_TransactionID=f"TX{i}").json()["output_BankTransactionRef"] for i in range(20)
    }
    assert len(refs) == 20


def test_repeat_is_duplicate_with_first_reference_and_date_time(mocks, clock):
    first = generate(mocks).json()
    clock.advance(minutes=5)
    again = generate(mocks).json()
    assert again["output_ResponseCode"] == "-3"
    assert again["output_ResponseDesc"] == "Duplicate"
    assert again["output_BankTransactionRef"] == first["output_BankTransactionRef"]
    assert again["output_BankDateTime"] == first["output_BankDateTime"]


def test_repeat_with_same_amount_written_differently_is_duplicate(mocks):
    first = generate(mocks).json()
    again = generate(mocks, input_Amount="200.00").json()
    assert (again["output_ResponseCode"], again["output_BankTransactionRef"]) == (
        "-3",
        first["output_BankTransactionRef"],
    )


def test_account_number_is_not_part_of_the_duplicate_key(mocks):
    first = generate(mocks).json()
    again = generate(mocks, input_AccountNumber="85000001222841").json()
    assert again["output_ResponseCode"] == "-3"
    assert again["output_BankTransactionRef"] == first["output_BankTransactionRef"]


@pytest.mark.parametrize(
    "change",
    [{"input_Amount": "300"}, {"input_CustomerMSISDN": "243843330334"}, {"input_Currency": "USD"}],
)
def test_same_transaction_id_with_other_details_is_failure_with_a_reason(mocks, change):
    first = generate(mocks).json()
    other = generate(mocks, **change).json()
    assert other["output_ResponseCode"] == "-1"
    assert "input_TransactionID was already used" in other["output_ResponseDesc"]
    assert other["output_BankTransactionRef"] != first["output_BankTransactionRef"]
    assert len(other["output_BankTransactionRef"]) == 32


def test_optional_account_number_may_be_left_out(mocks):
    body = {k: v for k, v in DOCUMENT_GENERATION.items() if k != "input_AccountNumber"}
    assert mocks.bank.post("/token-generation", json=body).json()["output_ResponseCode"] == "0"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({k: v for k, v in DOCUMENT_GENERATION.items() if k != "input_Amount"}, "input_Amount"),
        ({**DOCUMENT_GENERATION, "input_Amount": 200}, "input_Amount"),
        ({**DOCUMENT_GENERATION, "input_Amount": "-5"}, "input_Amount"),
        ({**DOCUMENT_GENERATION, "input_Amount": "1e3"}, "input_Amount"),
        ({**DOCUMENT_GENERATION, "input_Currency": "XXX"}, "input_Currency"),
        ({**DOCUMENT_GENERATION, "input_CustomerMSISDN": "+243843330333"}, "input_CustomerMSISDN"),
        ({**DOCUMENT_GENERATION, "input_Extra": "1"}, "input_Extra"),
    ],
)
def test_invalid_request_is_400_failure_naming_the_field_with_all_four_fields(mocks, body, named):
    response = mocks.bank.post("/token-generation", json=body)
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {
        "output_ResponseCode",
        "output_ResponseDesc",
        "output_BankTransactionRef",
        "output_BankDateTime",
    }
    assert answer["output_ResponseCode"] == "-1"
    assert named in answer["output_ResponseDesc"]
    assert len(answer["output_BankTransactionRef"]) == 32


def test_invalid_request_is_not_recorded(mocks):
    mocks.bank.post("/token-generation", json={**DOCUMENT_GENERATION, "input_Amount": "0"})
    assert generate(mocks).json()["output_ResponseCode"] == "0"


def test_wrong_content_type_is_415_in_the_envelope(mocks):
    response = mocks.bank.post("/token-generation", content=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["output_ResponseCode"] == "-1"


def test_other_method_is_405_in_the_envelope_with_allow(mocks):
    response = mocks.bank.get("/token-generation")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["output_ResponseCode"] == "-1"


def test_unknown_path_is_404_in_the_envelope_naming_the_served_paths(mocks):
    response = mocks.bank.post("/token-redemption", json={})
    assert response.status_code == 404
    assert "POST /token-generation" in response.json()["output_ResponseDesc"]


def test_configured_path_serves_the_operation(make_mocks):
    mocks = make_mocks(
        paths={"token_generation": "/atm/v1/token", "token_redemption": "/r", "token_reversal": "/v"}
    )
    assert mocks.bank.post("/atm/v1/token", json=DOCUMENT_GENERATION).json()["output_ResponseCode"] == "0"
    assert mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).status_code == 404


@pytest.mark.parametrize("field", ["input_CustomerMSISDN", "input_Amount", "input_TransactionID"])
def test_a_newline_after_a_field_is_not_in_its_format(mocks, field):
    response = generate(mocks, **{field: DOCUMENT_GENERATION[field] + "\n"})
    assert response.status_code == 400
    assert field in response.json()["output_ResponseDesc"]


@pytest.mark.parametrize("timezone", ["UTC", "Africa/Kinshasa", "Europe/London"])
def test_bank_date_time_is_the_moment_in_the_zone_to_the_second_across_a_clock_change(timezone):
    """bank_date_time remembers recent seconds; each is still read in the zone it was asked in."""
    start = datetime(2026, 10, 25, 0, 59, 58, 700_000, tzinfo=UTC)  # London leaves summer time at 01:00
    for step in range(0, 4000, 250):
        moment = start + timedelta(milliseconds=step)
        expected = moment.astimezone(ZoneInfo(timezone)).strftime("%Y%m%d %H%M%S")
        assert bank_date_time(moment, timezone) == expected


def test_references_do_not_repeat_when_random_is_seeded_again_or_the_process_forks():
    """Hypothesis (and tests) seed random's shared generator; a forked worker starts from its parent's."""
    # The random part, after the 13 digits of the microsecond (which differ anyway).
    random.seed(7)
    first = new_bank_transaction_ref()[13:]
    random.seed(7)
    assert new_bank_transaction_ref()[13:] != first
    if not hasattr(os, "fork"):
        return
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, new_bank_transaction_ref()[13:].encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 64).decode() != new_bank_transaction_ref()[13:]
    os.close(read)
    os.close(write)


def test_bank_references_are_in_the_order_they_were_made():
    """So that the store's index on them grows at one end (mocks/values.py)."""
    made = [new_bank_transaction_ref() for _ in range(1000)]
    assert [ref[:13] for ref in made] == sorted(ref[:13] for ref in made)  # by their microsecond
    assert len(set(made)) == 1000
    assert all(len(ref) == 32 and int(ref, 16) >= 0 for ref in made)
