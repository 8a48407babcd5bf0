"""The judgement of one exchange: the client's request against the document, the upstream's answer by
fuzz's own checks, one cause one finding. No server: exchanges as the proxy would have seen them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mpesa_atm.proxy.judge import CLIENT_CHECK, Judge, Seen
from mpesa_atm.spec import OPERATION_PATHS
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION

JSON = (("content-type", "application/json"),)
GENERATED = {
    "output_ResponseCode": "0",
    "output_ResponseDesc": "Success",
    "output_BankTransactionRef": "12345678123412341234123456789abc",
    "output_BankDateTime": "20190611 223210",
}
REDEEMED = {
    "output_ResponseCode": "0",
    "output_ResponseDesc": "Success",
    "output_InsightReference": "12sdxq3634dadsas242",
    "output_ThirdPartyReference": DOCUMENT_REDEMPTION["input_ThirdPartyReference"],
}


@pytest.fixture
def bank(judges: dict[str, Judge]) -> Judge:
    return judges["bank"]


@pytest.fixture
def ipg(judges: dict[str, Judge]) -> Judge:
    return judges["ipg"]


def seen(
    operation_id: str,
    request: Any,
    answer: Any,
    *,
    status: int = 200,
    request_type: str = "application/json",
    answer_type: str = "application/json",
    elapsed: float = 0.01,
) -> Seen:
    raw = request if isinstance(request, bytes) else json.dumps(request).encode()
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    return Seen(
        operation_id,
        (("content-type", request_type),),
        raw,
        status,
        (("content-type", answer_type),),
        body,
        elapsed,
    )


def judged(judge: Judge, exchange: Seen) -> tuple[list[tuple[str, str, str, str]], set[str]]:
    """(check, rule, side, severity) of each finding, client's first; and the checks that applied."""
    case = judge.case(exchange)
    client = judge.client(exchange, case, "x1")
    upstream = judge.upstream(exchange, case, "x1")
    findings = [(f.check, f.rule, f.side, f.severity) for f in (*client.findings, *upstream.findings)]
    assert all(f.exchange_ids == ("x1",) for f in (*client.findings, *upstream.findings))
    return findings, {*client.applied, *upstream.applied}


def test_a_correct_token_generation_finds_nothing_and_exercises_the_answer_checks(bank: Judge) -> None:
    findings, applied = judged(bank, seen("token_generation", DOCUMENT_GENERATION, GENERATED))
    assert findings == []
    assert {CLIENT_CHECK, "json_envelope", "mapped_response_code", "bank_reference_length"} <= applied
    assert "invalid_request_not_success" not in applied  # a valid request: the check does not apply


def test_a_correct_redemption_finds_nothing(ipg: Judge) -> None:
    findings, applied = judged(ipg, seen("token_redemption", DOCUMENT_REDEMPTION, REDEEMED))
    assert findings == []
    assert "third_party_reference_echoed" in applied


def test_an_answer_outside_the_envelope_is_one_upstream_failure_of_json_envelope(bank: Judge) -> None:
    findings, _ = judged(bank, seen("token_generation", DOCUMENT_GENERATION, b"OK", answer_type="text/plain"))
    # content_type_conformance and response_schema_conformance are folded under it, as fuzz folds them
    assert findings == [("json_envelope", "envelope", "upstream", "failure")]


def test_a_server_error_is_only_not_a_server_error(bank: Judge) -> None:
    findings, _ = judged(bank, seen("token_generation", DOCUMENT_GENERATION, b"boom", status=500))
    assert findings == [("not_a_server_error", "server_error", "upstream", "failure")]


def test_a_bank_reference_of_the_wrong_length_in_a_success_is_a_failure(bank: Judge) -> None:
    answer = {**GENERATED, "output_BankTransactionRef": "short"}
    findings, _ = judged(bank, seen("token_generation", DOCUMENT_GENERATION, answer))
    assert findings == [("bank_reference_length", "bank_reference", "upstream", "failure")]


def test_a_request_without_a_required_field_is_the_clients_failure(bank: Judge) -> None:
    request = {k: v for k, v in DOCUMENT_GENERATION.items() if k != "input_TransactionID"}
    refused = {**GENERATED, "output_ResponseCode": "-1", "output_ResponseDesc": "Failure: invalid request"}
    findings, _ = judged(bank, seen("token_generation", request, refused, status=400))
    assert findings == [(CLIENT_CHECK, "required_input", "client", "failure")]


def test_a_required_field_missing_and_answered_0_is_both_sides_failure(bank: Judge) -> None:
    request = {k: v for k, v in DOCUMENT_GENERATION.items() if k != "input_TransactionID"}
    findings, _ = judged(bank, seen("token_generation", request, GENERATED))
    assert findings == [
        (CLIENT_CHECK, "required_input", "client", "failure"),
        ("invalid_request_not_success", "required_input", "upstream", "failure"),
    ]


def test_a_reference_over_32_characters_breaks_the_stated_limit(ipg: Judge) -> None:
    request = {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "r" * 40}
    refused = {
        **REDEEMED,
        "output_ResponseCode": "-1",
        "output_ResponseDesc": "Failure",
        "output_ThirdPartyReference": "",
    }
    findings, _ = judged(ipg, seen("token_redemption", request, refused, status=400))
    assert findings == [(CLIENT_CHECK, "stated_limit", "client", "failure")]


def test_a_body_that_is_not_json_is_the_clients_failure(ipg: Judge) -> None:
    refused = {
        **REDEEMED,
        "output_ResponseCode": "-1",
        "output_ResponseDesc": "Failure",
        "output_ThirdPartyReference": "",
    }
    findings, _ = judged(ipg, seen("token_redemption", b"not json", refused, status=400))
    assert findings == [(CLIENT_CHECK, "required_input", "client", "failure")]


@pytest.mark.parametrize(
    ("request_type", "change"),
    [("text/plain", {}), ("application/json", {"input_CustomerMSISDN": 243843330333})],
    ids=["another Content-Type", "a number for a string"],
)
def test_a_request_outside_the_harness_formats_only_is_a_client_warning(
    bank: Judge, request_type: str, change: dict[str, Any]
) -> None:
    request = {**DOCUMENT_GENERATION, **change}
    refused = {**GENERATED, "output_ResponseCode": "-1", "output_ResponseDesc": "Failure"}
    findings, _ = judged(
        bank, seen("token_generation", request, refused, status=400, request_type=request_type)
    )
    assert findings == [(CLIENT_CHECK, "formats", "client", "warning")]


def test_the_response_time_bound_fails_a_slow_answer_only_when_given() -> None:
    timed = Judge("bank", OPERATION_PATHS.__getitem__, max_response_time=0.5)
    assert "response_time" in timed.check_names
    slow = seen("token_generation", DOCUMENT_GENERATION, GENERATED, elapsed=0.8)
    assert judged(timed, slow)[0] == [("response_time", "response_time", "upstream", "failure")]
    assert judged(timed, seen("token_generation", DOCUMENT_GENERATION, GENERATED, elapsed=0.2))[0] == []


@pytest.mark.parametrize("role", ["bank", "ipg"])
def test_a_new_judges_first_answers_compile_nothing(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the checks compile on first use (each answer schema) is compiled when the judge is built,
    in a worker's start, not in its first calls (which it held for hundreds of ms under load)."""
    from mpesa_atm.fuzz import answer_fields
    from mpesa_atm.operations import operations_of

    answer_fields.response_validator.cache_clear()  # as in a new worker
    judge = Judge(role, OPERATION_PATHS.__getitem__)

    def compiled_late(schema: Any) -> Any:
        raise AssertionError("an answer schema compiled in a call, not at the judge's start")

    monkeypatch.setattr(answer_fields, "_compiled", compiled_late)
    for operation in operations_of(role):
        for status, code, description in ((200, "0", "Success"), (400, "-1", "Failure")):
            answer = json.dumps({"output_ResponseCode": code, "output_ResponseDesc": description}).encode()
            exchange = seen(operation.id, {"input_Amount": "200"}, answer, status=status)
            judged(judge, exchange)
