"""Fault injection in process: response codes, delays, modes, magic values, the header; their limits."""

from __future__ import annotations

import time

import pytest

from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, DOCUMENT_TOKEN

HEADER = "X-Mpesa-Atm-Fault"


@pytest.fixture
def seeded(mocks):
    mocks.ipg.post("/_harness/tokens", json=DOCUMENT_TOKEN)
    return mocks


def redeem(mocks, headers=None, **changes):
    response = mocks.ipg.post("/token-redemption", json={**DOCUMENT_REDEMPTION, **changes}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def add_fault(client, **rule):
    response = client.post("/_harness/faults", json=rule)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize("code", ["-1", "-2", "-6", "-7", "-8"])
def test_rule_answers_the_code_in_the_envelope_and_the_token_stays_unspent(seeded, code):
    add_fault(seeded.ipg, operation="token-redemption", response_code=code, times=1)
    answer = redeem(seeded)
    assert answer["output_ResponseCode"] == code
    assert answer["output_ThirdPartyReference"] == DOCUMENT_REDEMPTION["input_ThirdPartyReference"]
    assert redeem(seeded)["output_ResponseCode"] == "0"  # the fault did not redeem the token


def test_rule_with_times_one_fires_exactly_once(seeded):
    add_fault(seeded.ipg, operation="token-redemption", response_code="-7", times=1)
    codes = [redeem(seeded, input_ThirdPartyReference=f"ref-{i}")["output_ResponseCode"] for i in range(3)]
    assert codes == ["-7", "0", "-1"]
    (rule,) = seeded.ipg.get("/_harness/faults").json()["faults"]
    assert rule["remaining"] == 0


def test_rule_without_times_fires_until_deleted(seeded):
    rule_id = add_fault(seeded.ipg, response_code="-8")
    assert [redeem(seeded)["output_ResponseCode"] for _ in range(3)] == ["-8", "-8", "-8"]
    assert seeded.ipg.delete(f"/_harness/faults/{rule_id}").status_code == 204
    assert seeded.ipg.delete(f"/_harness/faults/{rule_id}").status_code == 404
    assert redeem(seeded)["output_ResponseCode"] == "0"


def test_rule_for_another_operation_does_not_fire(seeded):
    add_fault(seeded.ipg, operation="token-reversal", response_code="-2")
    assert redeem(seeded)["output_ResponseCode"] == "0"


def test_rule_matches_on_request_fields(seeded):
    add_fault(seeded.ipg, response_code="-6", match={"input_CustomerMSISDN": "243811111111"})
    assert redeem(seeded, input_CustomerMSISDN="243811111111")["output_ResponseCode"] == "-6"
    assert redeem(seeded)["output_ResponseCode"] == "0"


def test_rule_with_a_probability_fires_on_some_calls(mocks):
    add_fault(mocks.bank, response_code="-7", probability=0.5)
    codes = [
        mocks.bank.post(
            "/token-generation", json={**DOCUMENT_GENERATION, "input_TransactionID": f"T{i}"}
        ).json()["output_ResponseCode"]
        for i in range(60)
    ]
    assert 10 < codes.count("-7") < 50  # binomial(60, 0.5): outside this, p < 1e-6
    assert set(codes) == {"-7", "0"}


def test_bank_mock_can_answer_any_mapped_code(mocks):
    for code in ["-3", "-4", "-5", "-9"]:
        add_fault(mocks.bank, response_code=code, times=1, description="told to")
        answer = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
        assert answer["output_ResponseCode"] == code
        assert answer["output_ResponseDesc"].endswith(": told to")
        assert len(answer["output_BankTransactionRef"]) == 32


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"operation": "token-generation", "response_code": "-7"}, "has no operation"),
        ({"response_code": "-4"}, "can be told to answer"),
        ({}, "needs response_code"),
        ({"response_code": "-7", "connection": "reset"}, "either response_code or connection"),
        ({"delay_ms": 10, "delay_distribution": {"distribution": "uniform"}}, "not both"),
    ],
)
def test_unusable_rule_is_refused_with_the_reason(mocks, rule, message):
    response = mocks.ipg.post("/_harness/faults", json=rule)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_fixed_delay_then_normal_answer(seeded):
    add_fault(seeded.ipg, operation="token-redemption", delay_ms=300, times=1)
    started = time.monotonic()
    assert redeem(seeded)["output_ResponseCode"] == "0"
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize(
    "distribution",
    [
        {"distribution": "uniform", "lower_ms": 100, "upper_ms": 150},
        {"distribution": "lognormal", "median_ms": 120, "sigma": 0.01},
    ],
)
def test_random_delays_stay_in_their_distribution(mocks, distribution):
    add_fault(mocks.bank, delay_distribution=distribution, times=1)
    started = time.monotonic()
    mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION)
    assert 0.09 <= time.monotonic() - started < 1.0


def test_delay_with_a_code(seeded):
    add_fault(seeded.ipg, response_code="-6", delay_ms=200, times=1)
    started = time.monotonic()
    assert redeem(seeded)["output_ResponseCode"] == "-6"
    assert time.monotonic() - started >= 0.2


def test_header_fault_applies_to_that_call_only(seeded):
    answer = redeem(seeded, headers={HEADER: "response_code=-2; description=G2 rejected the debit"})
    assert answer["output_ResponseCode"] == "-2"
    assert answer["output_ResponseDesc"] == "G2 Error: G2 rejected the debit"
    assert redeem(seeded)["output_ResponseCode"] == "0"


def test_bad_header_is_a_failure_saying_why(seeded):
    answer = redeem(seeded, headers={HEADER: "response_code"})
    assert answer["output_ResponseCode"] == "-1"
    assert HEADER in answer["output_ResponseDesc"]


@pytest.mark.parametrize("n", range(1, 10))
def test_magic_msisdn_gives_its_code_on_both_mocks(mocks, n):
    msisdn = f"24390000000{n}"
    assert redeem(mocks, input_CustomerMSISDN=msisdn)["output_ResponseCode"] == f"-{n}"
    body = {**DOCUMENT_GENERATION, "input_CustomerMSISDN": msisdn}
    assert mocks.bank.post("/token-generation", json=body).json()["output_ResponseCode"] == f"-{n}"


def test_magic_values_can_be_switched_off(mocks):
    assert mocks.ipg.put("/_harness/modes", json={"magic_values": False}).json()["magic_values"] is False
    assert redeem(mocks, input_CustomerMSISDN="243900000007")["output_ResponseCode"] == "-9"


def test_magic_values_off_by_config(make_mocks):
    mocks = make_mocks(magic_values=False)
    assert redeem(mocks, input_CustomerMSISDN="243900000007")["output_ResponseCode"] == "-9"


def test_offline_mode_answers_every_call_api_offline_until_reset(seeded):
    seeded.ipg.put("/_harness/modes", json={"offline": True})
    assert redeem(seeded)["output_ResponseCode"] == "-8"
    seeded.ipg.post("/_harness/reset")
    seeded.ipg.post("/_harness/tokens", json=DOCUMENT_TOKEN)
    assert redeem(seeded)["output_ResponseCode"] == "0"


def test_offline_by_config(make_mocks):
    mocks = make_mocks(offline=True)
    answer = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert answer["output_ResponseCode"] == "-8"


def test_reset_clears_fault_rules_and_modes(seeded):
    add_fault(seeded.ipg, response_code="-7")
    seeded.ipg.put("/_harness/modes", json={"max_concurrency": 3})
    seeded.ipg.post("/_harness/reset")
    assert seeded.ipg.get("/_harness/faults").json() == {"faults": []}
    assert seeded.ipg.get("/_harness/modes").json() == {
        "offline": False,
        "max_concurrency": None,
        "magic_values": True,
    }


def test_faults_of_one_mock_do_not_touch_the_other(mocks):
    add_fault(mocks.ipg, response_code="-7")
    assert mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()["output_ResponseCode"] == "0"


def test_a_hang_lets_go_after_the_hang_seconds_setting(make_mocks):
    mocks = make_mocks(hang_seconds=0.3)
    mocks.ipg.post("/_harness/tokens", json=DOCUMENT_TOKEN)
    started = time.monotonic()
    answer = redeem(mocks, headers={HEADER: "connection=hang"})
    assert 0.3 <= time.monotonic() - started < 5
    assert answer["output_ResponseCode"] == "-1"
    assert "hang" in answer["output_ResponseDesc"]
