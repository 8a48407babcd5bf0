"""How the document's checks read a case and its answer, and how they report a broken rule: a
`ContractViolation` with what was received, what the document says, and the steps to replay it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn

from schemathesis import Case, Response
from schemathesis.core.failures import Failure, Severity

from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.fuzz.context import Probe
from mpesa_atm.operations import Role, operations

__all__ = [
    "ContractViolation",
    "answer_of",
    "derived",
    "describe",
    "documented_code",
    "excerpt",
    "fail",
    "is_valid_request",
    "role_of",
    "steps",
    "text",
]


class ContractViolation(Failure):
    """A rule of the document broken: what the partner sent, what the document says, and how to replay it."""

    code: ClassVar[str] = "MPESA"
    kind_title: ClassVar[str] = "M-Pesa Generic ATM rule broken"

    def __init__(
        self,
        *,
        check: str,
        case: Case,
        title: str,
        received: str,
        documented: str,
        reproduce: tuple[str, ...] = (),
    ) -> None:
        message = f"Received: {received}\nDocumented: {documented}"
        super().__init__(operation=case.operation.label, title=title, message=message, severity=Severity.HIGH)
        self.check = check
        self.received = received
        self.documented = documented
        self.reproduce = reproduce

    @property
    def _unique_key(self) -> str:
        return self.check


def fail(check: str, case: Case, title: str, received: str, documented: str, *steps: str) -> NoReturn:
    raise ContractViolation(
        check=check, case=case, title=title, received=received, documented=documented, reproduce=steps
    )


# Reading the case -----------------------------------------------------------------------------------


def _operation_id(case: Case) -> str | None:
    raw = case.operation.definition.raw
    value = raw.get("operationId") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) else None


def role_of(case: Case) -> Role | None:
    """The role whose operation `case` calls, or None for an operation that is not the API's."""
    operation = operations().get(_operation_id(case) or "")
    return operation.role if operation else None


def is_valid_request(case: Case) -> bool:
    """Whether the case's body is a JSON object the operation's schema accepts."""
    if not isinstance(case.body, dict) or (case.media_type or "").split(";")[0] != "application/json":
        return False
    body = case.operation.get_body_for_media_type("application/json")
    return body is not None and bool(body.is_valid(case.body))


def derived(case: Case, body: Any) -> Case:
    """A new case of the same operation and media type with `body`."""
    return case.operation.Case(body=body, media_type=case.media_type or "application/json")


def steps(probe: Probe, *cases: Case) -> tuple[str, ...]:
    """The curl commands that replay `cases` after what set them up."""
    return (*probe.history, *(probe.reproduce(c) for c in cases))


# Reading the answer ---------------------------------------------------------------------------------


def answer_of(response: Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it is not one."""
    try:
        parsed = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def text(answer: Mapping[str, Any] | None, key: str) -> str | None:
    """The answer's string field `key`, or None when it is absent or not a string."""
    value = answer.get(key) if answer is not None else None
    return value if isinstance(value, str) else None


def excerpt(response: Response, limit: int = 300) -> str:
    body = response.content[:limit].decode("utf-8", errors="replace")
    more = "..." if len(response.content) > limit else ""
    return f"HTTP {response.status_code} {body!r}{more}"


def describe(code: str | None, answer: Mapping[str, Any] | None) -> str:
    desc = text(answer, "output_ResponseDesc")
    return f"{code!r}" + (f" ({desc})" if desc else "")


def documented_code(code: ResponseCode) -> str:
    return f"{code.value} {DESCRIPTIONS[code]}"
