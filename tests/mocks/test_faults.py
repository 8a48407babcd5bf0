"""Fault injection in process: response codes, delays, modes, magic values, the header; their limits."""

from __future__ import annotations

import time

import pytest
from jsonschema import Draft4Validator

from mpesa_atm.errors import FaultError
from mpesa_atm.mocks.faults import ROLE_CODES, Delay, FaultRule
from mpesa_atm.spec import load_spec
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.tokens import redeem, seed_token

HEADER = "X-Mpesa-Atm-Fault"


def add_fault(client, **rule):
    response = client.post("/_harness/faults", json=rule)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.parametrize("code", ["-1", "-2", "-6", "-7", "-8"])
def test_rule_answers_the_code_in_the_envelope_and_the_token_stays_unspent(seeded, code):
    add_fault(seeded.ipg, operation="token-redemption", response_code=code, times=1)
    answer = redeem(seeded.ipg)
    assert answer["output_ResponseCode"] == code
    assert answer["output_ThirdPartyReference"] == DOCUMENT_REDEMPTION["input_ThirdPartyReference"]
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"  # the fault did not redeem the token


def test_rule_with_times_one_fires_exactly_once(seeded):
    add_fault(seeded.ipg, operation="token-redemption", response_code="-7", times=1)
    codes = [
        redeem(seeded.ipg, input_ThirdPartyReference=f"ref-{i}")["output_ResponseCode"] for i in range(3)
    ]
    assert codes == ["-7", "0", "-1"]
    (rule,) = seeded.ipg.get("/_harness/faults").json()["faults"]
    assert rule["remaining"] == 0


def test_rule_without_times_fires_until_deleted(seeded):
    rule_id = add_fault(seeded.ipg, response_code="-8")
    assert [redeem(seeded.ipg)["output_ResponseCode"] for _ in range(3)] == ["-8", "-8", "-8"]
    assert seeded.ipg.delete(f"/_harness/faults/{rule_id}").status_code == 204
    assert seeded.ipg.delete(f"/_harness/faults/{rule_id}").status_code == 404
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"


def test_rule_for_another_operation_does_not_fire(seeded):
    add_fault(seeded.ipg, operation="token-reversal", response_code="-2")
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"


def test_rule_matches_on_request_fields(seeded):
    add_fault(seeded.ipg, response_code="-6", match={"input_CustomerMSISDN": "243811111111"})
    assert redeem(seeded.ipg, input_CustomerMSISDN="243811111111")["output_ResponseCode"] == "-6"
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"


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
        ({"operation": "token_generation", "response_code": "-7"}, "operation must be one of token_redem"),
        ({"response_code": "-4"}, 'response_code must be one of -1, -2, -6, -7, -8, not "-4"'),
        ({}, "the body needs response_code, delay_ms, delay_distribution or connection"),
        ({"response_code": "-7", "connection": "reset"}, "has response_code and connection: give only one"),
        (
            {"delay_ms": 10, "delay_distribution": {"distribution": "uniform"}},
            "has delay_ms and delay_distribution: give only one",
        ),
        ({"delay_ms": 10, "times": 2**63}, "times must be at most 1000000, not 9223372036854775808"),
        ({"delay_ms": 10, "times": 2**64 + 1}, "times must be at most 1000000"),
        ({"delay_ms": 10, "times": 0}, "times must be at least 1, not 0"),
        ({"delay_ms": 10, "probability": 0}, "probability must be above 0, not 0"),
        ({"delay_ms": 120_001}, "delay_ms must be at most 120000"),
    ],
)
def test_rule_the_schema_refuses_is_a_400_saying_why_in_one_line(mocks, rule, message):
    response = mocks.ipg.post("/_harness/faults", json=rule)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert message in detail
    assert "Failed validating" not in detail and "\n" not in detail


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"operation": "token-generation", "response_code": "-7"}, "the ipg mock has no operation"),
        ({"response_code": "-4"}, "can be told to answer"),
        ({}, "a fault needs response_code, delay_ms, delay_distribution or connection"),
        ({"response_code": "-7", "connection": "reset"}, "either response_code or connection"),
        ({"delay_ms": 10, "delay_distribution": {"distribution": "uniform"}}, "not both"),
        ({"delay_ms": 10, "times": 2**63}, "times must be a whole number from 1 to 1000000"),
    ],
)
def test_the_mock_keeps_its_own_checks_for_rules_that_skip_the_schema(rule, message):
    # Headers and the rules kept in the store are parsed without the schema's check.
    with pytest.raises(FaultError, match=message):
        FaultRule.parse("ipg", rule)


def test_a_rule_in_the_schema_is_a_rule_the_mock_takes():
    """FaultRule's anyOf/not say what FaultRule.parse checks: the same rules pass and fail both."""
    schema = load_spec("control.yaml", role="ipg")["components"]["schemas"]["FaultRule"]
    validator = Draft4Validator(schema)
    for rule in [
        {},
        {"response_code": "-7"},
        {"delay_ms": 5},
        {"delay_distribution": {"distribution": "lognormal", "median_ms": 0}},
        {"connection": "reset", "processed": True},
        {"response_code": "-7", "delay_ms": 5},
        {"connection": "hang", "delay_ms": 5},
        {"response_code": "-7", "connection": "reset"},
        {"delay_ms": 5, "delay_distribution": {"distribution": "uniform"}},
        {"processed": True, "times": 3},
    ]:
        try:
            FaultRule.parse("ipg", rule)
        except FaultError:
            taken = False
        else:
            taken = True
        assert validator.is_valid(rule) is taken, rule


def test_uniform_delay_takes_its_bounds_in_either_order():
    uniform = {"distribution": "uniform", "lower_ms": 9, "upper_ms": 3}
    rule = FaultRule.parse("bank", {"delay_distribution": uniform})
    assert rule.delay == Delay(distribution="uniform", lower_ms=3, upper_ms=9)


def test_fault_codes_are_the_ones_control_yaml_lists_for_each_role():
    for role in ("ipg", "bank"):
        schema = load_spec("control.yaml", role=role)["components"]["schemas"]["FaultRule"]
        assert set(schema["properties"]["response_code"]["enum"]) == ROLE_CODES[role]


@pytest.mark.parametrize("spelling", ["token_redemption", "token-redemption"])
def test_rule_takes_either_spelling_and_lists_the_operation_id(seeded, spelling):
    add_fault(seeded.ipg, operation=spelling, response_code="-7", times=1)
    (rule,) = seeded.ipg.get("/_harness/faults").json()["faults"]
    assert rule["operation"] == "token_redemption"
    assert redeem(seeded.ipg)["output_ResponseCode"] == "-7"


@pytest.mark.parametrize("spelling", ["token_reversal", "token-reversal"])
def test_header_fault_for_another_operation_leaves_the_call_alone(seeded, spelling):
    header = {HEADER: f"operation={spelling}; response_code=-2"}
    assert redeem(seeded.ipg, headers=header)["output_ResponseCode"] == "0"


@pytest.mark.parametrize("spelling", ["token_redemption", "token-redemption"])
def test_header_fault_for_this_operation_applies(seeded, spelling):
    header = {HEADER: f"operation={spelling}; response_code=-2"}
    assert redeem(seeded.ipg, headers=header)["output_ResponseCode"] == "-2"


@pytest.mark.parametrize("spelling", ["token_generation", "token-generation"])
def test_header_naming_the_other_mocks_operation_leaves_the_call_alone(seeded, spelling):
    """As docs/mocks.md says: a client that sends one header to both mocks gets its fault from the
    mock whose operation it names, and a normal answer from the other."""
    header = {HEADER: f"operation={spelling}; response_code=-2"}
    assert redeem(seeded.ipg, headers=header)["output_ResponseCode"] == "0"


def test_header_fault_at_the_bank_for_an_ipg_operation_leaves_token_generation_alone(seeded):
    header = {HEADER: "operation=token_redemption; response_code=-2"}
    answer = seeded.bank.post("/token-generation", json=DOCUMENT_GENERATION, headers=header).json()
    assert answer["output_ResponseCode"] == "0", answer


def test_header_naming_an_operation_neither_mock_has_is_a_failure_saying_why(seeded):
    answer = redeem(seeded.ipg, headers={HEADER: "operation=token_refund; response_code=-2"})
    assert answer["output_ResponseCode"] == "-1"
    assert "the ipg mock has no operation 'token_refund'" in answer["output_ResponseDesc"]


def test_fixed_delay_then_normal_answer(seeded):
    add_fault(seeded.ipg, operation="token-redemption", delay_ms=300, times=1)
    started = time.monotonic()
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"
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
    assert redeem(seeded.ipg)["output_ResponseCode"] == "-6"
    assert time.monotonic() - started >= 0.2


def test_header_fault_applies_to_that_call_only(seeded):
    answer = redeem(seeded.ipg, headers={HEADER: "response_code=-2; description=G2 rejected the debit"})
    assert answer["output_ResponseCode"] == "-2"
    assert answer["output_ResponseDesc"] == "G2 Error: G2 rejected the debit"
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"


def test_bad_header_is_a_failure_saying_why(seeded):
    answer = redeem(seeded.ipg, headers={HEADER: "response_code"})
    assert answer["output_ResponseCode"] == "-1"
    assert HEADER in answer["output_ResponseDesc"]


@pytest.mark.parametrize("n", range(1, 10))
def test_magic_msisdn_gives_its_code_on_both_mocks(mocks, n):
    msisdn = f"24390000000{n}"
    assert redeem(mocks.ipg, input_CustomerMSISDN=msisdn)["output_ResponseCode"] == f"-{n}"
    body = {**DOCUMENT_GENERATION, "input_CustomerMSISDN": msisdn}
    assert mocks.bank.post("/token-generation", json=body).json()["output_ResponseCode"] == f"-{n}"


def test_magic_values_can_be_switched_off(mocks):
    assert mocks.ipg.put("/_harness/modes", json={"magic_values": False}).json()["magic_values"] is False
    assert redeem(mocks.ipg, input_CustomerMSISDN="243900000007")["output_ResponseCode"] == "-9"


def test_magic_values_off_by_config(make_mocks):
    mocks = make_mocks(magic_values=False)
    assert redeem(mocks.ipg, input_CustomerMSISDN="243900000007")["output_ResponseCode"] == "-9"


def test_offline_mode_answers_every_call_api_offline_until_reset(seeded):
    seeded.ipg.put("/_harness/modes", json={"offline": True})
    assert redeem(seeded.ipg)["output_ResponseCode"] == "-8"
    seeded.ipg.post("/_harness/reset")
    seed_token(seeded.ipg)
    assert redeem(seeded.ipg)["output_ResponseCode"] == "0"


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
    seed_token(mocks.ipg)
    started = time.monotonic()
    answer = redeem(mocks.ipg, headers={HEADER: "connection=hang"})
    assert 0.3 <= time.monotonic() - started < 5
    assert answer["output_ResponseCode"] == "-1"
    assert "hang" in answer["output_ResponseDesc"]
