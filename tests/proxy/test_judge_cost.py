"""What the judge does to cost less a call (issue 25) changes nothing it decides: its cases are those
schemathesis's constructor makes, slot by slot, and the checks' answers with the cached facts of an
operation are those of the facts read afresh, on every operation and on a request of each kind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from schemathesis import Case

from mpesa_atm.operations import ROLES, operations_of
from mpesa_atm.proxy import judge as judge_module
from mpesa_atm.proxy.judge import Judge, Seen
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION

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


def _slots(case: Case) -> dict[str, Any]:
    return {name: getattr(case, name) for name in Case.__slots__}


@pytest.mark.parametrize("role", ROLES)
def test_the_judges_cases_are_those_of_schemathesiss_constructor(judges: dict[str, Judge], role: str) -> None:
    judge = judges[role]
    assert judge._direct, "this schemathesis's Case has other slots: cases are made by its constructor"
    for operation in operations_of(judge.role):
        for body in BODIES:
            for media_type in MEDIA_TYPES:
                headers = (("content-type", media_type),) if media_type else ()
                seen = Seen(operation.id, headers, body)
                case = judge.case(seen)
                expected = _constructed(judge, seen, case.id)
                assert type(case) is Case
                assert _slots(case) == _slots(expected), (operation.id, body, media_type)
                assert case == expected
                assert case._override == expected._override
                assert _curl(case) == _curl(expected)
                # Each case its own containers: a change to one is no change to another's.
                assert case.headers is not judge.case(seen).headers
                assert case.body is not case._components[judge_module._BODY].value or not isinstance(
                    case.body, dict
                )


def test_the_cases_ids_are_unique(judges: dict[str, Judge]) -> None:
    judge = judges["bank"]
    seen = Seen("token_generation", (), b"{}")
    assert len({judge.case(seen).id for _ in range(100)}) == 100
