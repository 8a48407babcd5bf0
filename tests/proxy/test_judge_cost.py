"""What the judge does to cost less a call (issue 25) changes nothing it decides: its cases are those
schemathesis's constructor makes, slot by slot, and the checks' answers with the cached facts of an
operation are those of the facts read afresh, on every operation and on a request of each kind."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests
from schemathesis import Case, Response
from schemathesis.core.failures import Failure, FailureGroup

from mpesa_atm.fuzz import answer_checks, violations
from mpesa_atm.fuzz.checks import FOLDED_UNDER
from mpesa_atm.operations import ROLES, operations, operations_of
from mpesa_atm.proxy import judge as judge_module
from mpesa_atm.proxy.judge import Judge, Seen
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.proxy.test_judge import GENERATED, REDEEMED

# Requests of each kind a client may send: what the document wants, a JSON object it refuses, other
# JSON values, bytes that are no JSON, with and without a JSON Content-Type.
BODIES: tuple[bytes, ...] = (
    json.dumps(DOCUMENT_GENERATION).encode(),
    json.dumps(DOCUMENT_REDEMPTION).encode(),
    json.dumps({**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "x" * 40}).encode(),
    b'{"input_Amount": 200}',
    b"{}",
    b"[1, 2]",
    b'"text"',
    b"null",
    b"12",
    b"not json",
    b"\xff\xfe",
    b"",
)
MEDIA_TYPES = ("application/json", "application/json; charset=utf-8", "text/plain", "")


def _constructed(judge: Judge, seen: Seen, case_id: str) -> Case:
    """The case as schemathesis's own constructor makes it from what `seen` holds."""
    operation = judge._operations[seen.operation_id]
    return Case(
        operation,
        operation.method.upper(),
        operation.path,
        id=case_id,
        body=judge_module._request_body(seen.request_body),
        media_type=judge_module._header(seen.request_headers, "content-type") or "",
    )


def _curl(case: Case) -> str:
    """The case as schemathesis replays it, or the error it gives (a media type it cannot read)."""
    try:
        return case.as_curl_command()
    except Exception as exc:  # what fails must fail alike
        return f"{type(exc).__name__}: {exc}"


def _slots(value: Case | Response) -> dict[str, Any]:
    """Every slot of a schemathesis Case or Response, by name."""
    return {name: getattr(value, name) for name in type(value).__slots__}


def _requests(judge: Judge, media_types: tuple[str, ...] = MEDIA_TYPES) -> Iterator[tuple[str, bytes, str]]:
    """(operation id, body, Content-Type) of a request of each kind on each of the judge's operations."""
    return itertools.product((op.id for op in operations_of(judge.role)), BODIES, media_types)


@pytest.mark.parametrize("role", ROLES)
def test_the_judges_cases_are_those_of_schemathesiss_constructor(judges: dict[str, Judge], role: str) -> None:
    judge = judges[role]
    assert judge._direct, "this schemathesis's Case has other slots: cases are made by its constructor"
    for operation_id, body, media_type in _requests(judge):
        headers = (("content-type", media_type),) if media_type else ()
        seen = Seen(operation_id, headers, body)
        case = judge.case(seen)
        expected = _constructed(judge, seen, case.id)
        assert type(case) is Case
        assert _slots(case) == _slots(expected), (operation_id, body, media_type)
        assert case == expected
        assert case._override == expected._override
        assert _curl(case) == _curl(expected)
        # Each case its own containers: a change to one is no change to another's.
        assert case.headers is not judge.case(seen).headers
        assert case.body is not case._components[judge_module._BODY].value or not isinstance(case.body, dict)


def test_the_cases_ids_are_unique(judges: dict[str, Judge]) -> None:
    judge = judges["bank"]
    seen = Seen("token_generation", (), b"{}")
    assert len({judge.case(seen).id for _ in range(100)}) == 100


def _reference_facts(raw: Any) -> tuple[str, str | None, tuple[int, ...]]:
    """The operation's facts as the checks read them on every call before they were kept: its
    operationId, its role, its documented statuses."""
    value = raw.get("operationId") if isinstance(raw, Mapping) else None
    operation_id = value if isinstance(value, str) else ""
    operation = operations().get(operation_id)
    responses = raw.get("responses", {}) if isinstance(raw, Mapping) else {}
    statuses = tuple(sorted(int(status) for status in responses if str(status).isdigit()))
    return operation_id, operation.role if operation else None, statuses


def _as_tuple(facts: violations.OperationFacts) -> tuple[str, str | None, tuple[int, ...]]:
    return facts.operation_id, facts.role, facts.statuses


@pytest.mark.parametrize("role", ROLES)
def test_the_kept_facts_of_every_operation_are_those_read_afresh(judges: dict[str, Judge], role: str) -> None:
    judge = judges[role]
    for operation_id, operation in judge._operations.items():
        case = judge.case(Seen(operation_id, (), b"{}"))
        raw = operation.definition.raw
        expected = _reference_facts(raw)
        assert expected[0] == operation_id and expected[1] == role and 200 in expected[2]
        violations._FACTS.clear()
        assert _as_tuple(violations.facts_of(case)) == expected  # read
        assert _as_tuple(violations.facts_of(case)) == expected  # kept
        assert violations.operation_id_of(case) == operation_id and violations.role_of(case) == role
    for raw in (
        {},
        {"operationId": 5},
        {"operationId": "elsewhere", "responses": {"200": {}, "default": {}}},
        [],
    ):
        assert _as_tuple(violations.read_facts(raw)) == _reference_facts(raw)


# Answers of each kind: the document's, refusals, another status, outside the envelope, broken fields.
ANSWERS: tuple[tuple[int, bytes], ...] = (
    (200, json.dumps(GENERATED).encode()),
    (200, json.dumps(REDEEMED).encode()),
    (200, json.dumps({**REDEEMED, "output_ThirdPartyReference": "other"}).encode()),
    (200, json.dumps({**GENERATED, "output_BankDateTime": "20190231 223210"}).encode()),
    (200, json.dumps({**GENERATED, "output_BankTransactionRef": "short"}).encode()),
    (200, json.dumps({"output_ResponseCode": "-1", "output_ResponseDesc": "Failure"}).encode()),
    (200, json.dumps({"output_ResponseCode": "0", "output_ResponseDesc": "Duplicate"}).encode()),
    (200, json.dumps({"output_ResponseCode": 0, "output_ResponseDesc": "Success"}).encode()),
    (200, json.dumps({"output_ResponseCode": "7", "output_ResponseDesc": "Other"}).encode()),
    (400, json.dumps({"output_ResponseCode": "-1", "output_ResponseDesc": "Failure"}).encode()),
    (404, json.dumps(GENERATED).encode()),
    (500, b"Internal Server Error"),
    (200, b"[1]"),
    (200, b"not json"),
    (200, b""),
)


def _outcome(info: Any, response: Response, case: Case) -> tuple[Any, ...]:
    """What a check decides: skipped (True), passed (None), or its failures as fuzz and the proxy read
    them."""
    try:
        return ("returned", info.function(None, response, case), info.applies(case))
    except FailureGroup as group:
        return ("failed", *((f.title, f.message, getattr(f, "rule", None)) for f in group.exceptions))
    except Failure as failure:
        return ("failed", failure.title, failure.message, getattr(failure, "rule", None))


def _response(status: int, answer: bytes) -> Response:
    """A new answer object, as each exchange or call brings."""
    headers = {"content-type": ["application/json"]}
    return Response(status, headers, bytes(answer), requests.PreparedRequest(), 0.01, True)


def _forget() -> None:
    """Every fact the checks keep, forgotten: the next reading is afresh."""
    violations._FACTS.clear()
    violations._last_answer = (object(), None)
    answer_checks._last_valid = (object(), None, None, None, False)
    answer_checks._real_date_time.cache_clear()


@pytest.mark.parametrize("role", ROLES)
def test_every_check_decides_alike_with_its_facts_kept_or_read_afresh(
    judges: dict[str, Judge], role: str
) -> None:
    judge = judges[role]
    afresh: list[tuple[Case, int, bytes, list[tuple[Any, ...]]]] = []
    for operation_id, body, media_type in _requests(judge, MEDIA_TYPES[:3]):
        case = judge.case(Seen(operation_id, (("content-type", media_type),), body))
        for status, answer in ANSWERS:
            outcomes = []
            for info in judge.checks:
                _forget()
                outcomes.append(_outcome(info, _response(status, answer), case))
            afresh.append((case, status, answer, outcomes))
    # Then one answer after another, as the proxy and fuzz run them, each case after another case.
    for _ in range(2):
        for case, status, answer, outcomes in afresh:
            one = _response(status, answer)
            kept = [_outcome(info, one, case) for info in judge.checks]
            assert kept == outcomes, (case.operation.label, case.body, case.media_type, status, answer)


def _former_upstream(judge: Judge, seen: Seen, case: Case) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """Judge.upstream as it was before it cost less: Response's constructor, every check's `applies`
    asked; (check, rule, title, message) of each finding, and the checks that applied."""
    response = Response(
        seen.status,
        judge_module._headers_by_name(seen.response_headers),
        seen.response_body,
        requests.PreparedRequest(),
        seen.elapsed,
        True,
    )
    applied: list[str] = []
    failed: list[tuple[str, Failure]] = []
    for info in judge.checks:
        try:
            skipped = info.function(None, response, case)  # type: ignore[arg-type]
        except FailureGroup as group:
            applied.append(info.name)
            failed.extend((info.name, f) for f in group.exceptions if isinstance(f, Failure))
            continue
        except Failure as failure:
            applied.append(info.name)
            failed.append((info.name, failure))
            continue
        if not skipped and info.applies(case):
            applied.append(info.name)
    folded = {name for check, _ in failed for name in FOLDED_UNDER.get(check, ()) if name != check}
    findings = tuple(
        (f.check, f.rule, f.title, f.message)
        for f in (judge_module._upstream_finding(check, failure, "x") for check, failure in failed)
        if f.check not in folded
    )
    return findings, tuple(applied)


@pytest.mark.parametrize("role", ROLES)
def test_the_upstreams_judgement_is_the_former_one(judges: dict[str, Judge], role: str) -> None:
    judge = judges[role]
    assert judge._direct_response, "this schemathesis's Response has other slots: made by its constructor"
    answer_types = ("application/json", "text/plain")
    for (operation_id, body, media_type), (status, answer), answer_type in itertools.product(
        _requests(judge, MEDIA_TYPES[:3]), ANSWERS, answer_types
    ):
        seen = Seen(
            operation_id,
            (("content-type", media_type),),
            body,
            status,
            (("Content-Type", answer_type), ("X-Other", "1"), ("x-other", "2")),
            answer,
            0.25,
        )
        case = judge.case(seen)
        response = judge_module._seen_response(seen, judge._request)
        expected = Response(
            status,
            judge_module._headers_by_name(seen.response_headers),
            answer,
            judge._request,
            0.25,
            True,
        )
        assert _slots(response) == _slots(expected)
        judged = judge.upstream(seen, case, "x")
        findings = tuple((f.check, f.rule, f.title, f.message) for f in judged.findings)
        assert (findings, judged.applied) == _former_upstream(judge, seen, case), seen
