"""How the document's checks read a case and its answer, and how they report a broken rule: a
`ContractViolation` with what was received, what the document says, and the steps to replay it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from schemathesis import Case, Response
from schemathesis.core.failures import Failure
from schemathesis.core.failures import Severity as _SchemathesisSeverity

from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.fuzz.context import Probe
from mpesa_atm.fuzz.results import FAILURE, WARNING, Severity
from mpesa_atm.judgement import RULES, documented
from mpesa_atm.operations import Role, operations
from mpesa_atm.spec import operation_definition, resolved

__all__ = [
    "FAILURE",
    "STATED_LIMITS",
    "WARNING",
    "ContractViolation",
    "OperationFacts",
    "Severity",
    "answer_of",
    "contradicted_code",
    "derived",
    "describe",
    "document_break",
    "documented_code",
    "excerpt",
    "facts_of",
    "fail",
    "is_refusal",
    "is_valid_request",
    "kind_of",
    "operation_id_of",
    "read_facts",
    "request_breaks_document",
    "required_fields",
    "role_of",
    "shared_answer",
    "shown",
    "steps",
    "text",
]


class ContractViolation(Failure):
    """A rule of the document broken (or a choice of ours not followed, when `severity` is a warning):
    what the partner sent, what the document says, and how to replay it."""

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
        severity: Severity = FAILURE,
        rule: str | None = None,
    ) -> None:
        message = f"Received: {received}\nDocumented: {documented}"
        super().__init__(
            operation=case.operation.label, title=title, message=message, severity=_SchemathesisSeverity.HIGH
        )
        self.check = check
        self.received = received
        self.documented = documented
        self.reproduce = reproduce
        self.verdict: Severity = severity
        # The rule of judgement.RULES it breaks, when the check named one (the proxy's findings carry it).
        self.rule = rule

    @property
    def _unique_key(self) -> str:
        return self.check


def fail(
    check: str,
    case: Case,
    title: str,
    received: str,
    documented: str,
    *steps: str,
    severity: Severity = FAILURE,
    rule: str | None = None,
) -> NoReturn:
    """Raises the finding. With `rule` (a name of judgement.RULES), its severity is the rule's and its
    Documented: text ends with where the rule comes from: the document's section or the harness's
    reading (`severity` is then ignored)."""
    if rule is not None:
        severity = RULES[rule].severity
        documented = _documented(rule, documented)
    raise ContractViolation(
        check=check,
        case=case,
        title=title,
        received=received,
        documented=documented,
        reproduce=steps,
        severity=severity,
        rule=rule,
    )


_documented = documented  # fail()'s parameter of that name hides the function


# Reading the case -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationFacts:
    """What the checks read of the operation a case calls, which depends on the operation alone: its
    operationId ("" when it has none), its role (None for an operation that is not the API's), and
    the HTTP statuses its definition documents, in order."""

    operation_id: str
    role: Role | None
    statuses: tuple[int, ...]


def read_facts(raw: Any) -> OperationFacts:
    """The facts of an operation read afresh from its definition (`case.operation.definition.raw`)."""
    value = raw.get("operationId") if isinstance(raw, Mapping) else None
    operation_id = value if isinstance(value, str) else ""
    responses = raw.get("responses", {}) if isinstance(raw, Mapping) else {}
    statuses = tuple(sorted(int(status) for status in responses if str(status).isdigit()))
    return OperationFacts(operation_id, _role(operation_id), statuses)


# The facts of each operation definition read so far, by identity (each held, so that its id is not
# reused): every check of every answer reads them, a dozen times an exchange in the proxy. An
# operation's definition is not changed once a schema is loaded.
_FACTS: dict[int, tuple[Any, OperationFacts]] = {}
_MOST_FACTS = 1024  # more definitions than that (schemas loaded again and again): start afresh


def facts_of(case: Case) -> OperationFacts:
    """The facts of the operation `case` calls (read_facts), read once a definition."""
    raw = case.operation.definition.raw
    entry = _FACTS.get(id(raw))
    if entry is not None and entry[0] is raw:
        return entry[1]
    facts = read_facts(raw)
    if len(_FACTS) >= _MOST_FACTS:
        _FACTS.clear()
    _FACTS[id(raw)] = (raw, facts)
    return facts


def operation_id_of(case: Case) -> str:
    """The operationId of the operation `case` calls ("" when it has none)."""
    return facts_of(case).operation_id


def role_of(case: Case) -> Role | None:
    """The role whose operation `case` calls, or None for an operation that is not the API's."""
    return facts_of(case).role


@functools.cache
def _role(operation_id: str) -> Role | None:
    operation = operations().get(operation_id)
    return operation.role if operation else None


def is_valid_request(case: Case) -> bool:
    """Whether the case's body is a JSON object the operation's schema accepts."""
    if not isinstance(case.body, dict) or (case.media_type or "").split(";")[0] != "application/json":
        return False
    body = case.operation.get_body_for_media_type("application/json")
    return body is not None and bool(body.is_valid(case.body))


def _body_object(case: Case) -> dict[str, Any] | None:
    """The case's body as the partner reads it, whatever the Content-Type: a JSON object or None."""
    body = case.body
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    return body if isinstance(body, dict) else None


# The limits the document itself states of a request's fields (2.1.2.1, 2.2.2.1: "Maximum 32
# characters"); every other length is a format of ours (docs/spec-notes.md row 3).
STATED_LIMITS: dict[str, int] = {"input_ThirdPartyReference": 32, "input_BankTransactionRef": 32}


def document_break(case: Case) -> tuple[str, str] | None:
    """How the case breaks the document itself, not only our formats, as (the rule of
    judgement.RULES, what is wrong in words); None when it does not. It breaks the document when its
    body is not a JSON object (required_input), a field the document requires is missing or empty
    (required_input), or a field is longer than the document's own maximum (stated_limit). Every other
    way a request can fail the schema, a format, a type, an unknown field, the Content-Type, is a
    choice of ours: a partner that accepts it is laxer than we are, not wrong."""
    body = _body_object(case)
    if body is None:
        return "required_input", "a body that is not a JSON object"
    operation_id = operation_id_of(case)
    missing = [field for field in required_fields(operation_id) if body.get(field) in (None, "")]
    if missing:
        return "required_input", f"a request without {', '.join(missing)} (Required)"
    for field, limit in STATED_LIMITS.items():
        value = body.get(field)
        if field in request_field_names(operation_id) and isinstance(value, str) and len(value) > limit:
            return "stated_limit", f"a request whose {field} has {len(value)} characters (maximum {limit})"
    return None


def request_breaks_document(case: Case) -> bool:
    """Whether the case breaks the document itself, not only our formats (document_break)."""
    return document_break(case) is not None


@functools.cache
def required_fields(operation_id: str) -> tuple[str, ...]:
    """The request fields the document requires of an operation (its schema's `required`), none for an
    operation that is not the API's."""
    if operation_id not in operations():
        return ()
    document, post = operation_definition(operation_id)
    schema = resolved(document, post["requestBody"]["content"]["application/json"]["schema"])
    return tuple(schema.get("required", ()))


@functools.cache
def request_field_names(operation_id: str) -> frozenset[str]:
    """The request fields the document gives an operation, none for an operation that is not the API's."""
    if operation_id not in operations():
        return frozenset()
    document, post = operation_definition(operation_id)
    schema = resolved(document, post["requestBody"]["content"]["application/json"]["schema"])
    return frozenset(schema.get("properties", {}))


def derived(case: Case, body: Any) -> Case:
    """A new case of the same operation and media type with `body`."""
    return case.operation.Case(body=body, media_type=case.media_type or "application/json")


def steps(probe: Probe, *cases: Case) -> tuple[str, ...]:
    """The curl commands that replay `cases` after what set them up."""
    return (*probe.history, *(probe.reproduce(c) for c in cases))


# Reading the answer ---------------------------------------------------------------------------------


def answer_of(response: Response) -> dict[str, Any] | None:
    """The answer's JSON object (a copy of its fields, each caller's own), or None when it is not one."""
    answer = shared_answer(response)
    return dict(answer) if answer is not None else None


def shared_answer(response: Response) -> Mapping[str, Any] | None:
    """The answer's JSON object, or None when it is not one: the one parsed object that the checks of
    one answer share, to be read and never changed (answer_of gives a copy to change)."""
    global _last_answer
    content = response.content
    last = _last_answer
    if last[0] is not content:  # the checks of one answer read it one after the other: parsed once
        try:
            parsed = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        last = (content, parsed if isinstance(parsed, dict) else None)
        if type(content) is bytes:  # immutable: the same object, the same answer
            _last_answer = last
    return last[1]


# The body answer_of parsed last, held so that its id is not reused, and what it found in it.
_last_answer: tuple[Any, dict[str, Any] | None] = (object(), None)


def text(answer: Mapping[str, Any] | None, key: str) -> str | None:
    """The answer's string field `key`, or None when it is absent or not a string."""
    value = answer.get(key) if answer is not None else None
    return value if isinstance(value, str) else None


def is_refusal(response: Response) -> bool:
    """Whether the answer refuses the request: an HTTP 4xx, or a non-zero output_ResponseCode (the
    document names no HTTP statuses, so a partner may refuse with 200 and its code)."""
    if 400 <= response.status_code < 500:
        return True
    code = text(answer_of(response), "output_ResponseCode")
    return code is not None and code != "0"


def shown(value: Any) -> str:
    """A value as a message quotes it: JSON, as the API writes it ("absent" for no value)."""
    if value is None:
        return "absent"
    return json.dumps(value, ensure_ascii=False)


def excerpt(response: Response, limit: int = 300) -> str:
    """The answer as a message shows it: its status, and its body as received (cut at `limit`)."""
    content = response.content or b""
    if not content:
        return f"HTTP {response.status_code} with an empty body"
    body = content[:limit].decode("utf-8", errors="replace")
    body = body.replace("\r", "\\r").replace("\n", "\\n")
    more = "..." if len(content) > limit else ""
    return f"HTTP {response.status_code} {body}{more}"


def describe(code: str | None, answer: Mapping[str, Any] | None) -> str:
    """An output_ResponseCode as a message quotes it, with its description; when `code` is None, what
    the answer has instead ("output_ResponseCode 0, a number, not a string")."""
    if code is None:
        if answer is None:
            return "an answer that is not a JSON object"
        if "output_ResponseCode" not in answer:
            return "an answer without output_ResponseCode"
        value = answer["output_ResponseCode"]
        return f"output_ResponseCode {shown(value)}, {kind_of(value)}, not a string"
    desc = text(answer, "output_ResponseDesc")
    return shown(code) + (f" ({desc})" if desc else "")


def kind_of(value: Any) -> str:
    """What a JSON value is, in words: "a number", "null", "an object"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def documented_code(code: ResponseCode) -> str:
    return f"{code.value} {DESCRIPTIONS[code]}"


_CODE_OF_DESCRIPTION = {description.casefold(): code for code, description in DESCRIPTIONS.items()}


def contradicted_code(code: str | None, description: str | None) -> ResponseCode | None:
    """The code of the mapping table (section 4) whose description `description` is, when that
    contradicts `code`; else None. The description is read as the table's description of a code, up
    to a ": reason" after it, case aside ("success", "Duplicate: seen before"); free text is no
    description of the table's ("Internal Error", the document's own sample, or "Token generated").

    What contradicts (docs/spec-notes.md, section 4's notes): "Success" on any code but 0; on 0, any
    other code's description; on a negative code, another negative code's description, except the
    generic "Failure" (every negative code is a failure in plain words) and on -2 (G2's own error text
    is "populated in Response Description", and may read like another code's)."""
    if code is None or description is None or code not in _CODE_OF_DESCRIPTION.values():
        return None
    head = description.split(":", 1)[0].strip().rstrip(".").strip().casefold()
    named = _CODE_OF_DESCRIPTION.get(head)
    if named is None or named == code:
        return None
    if ResponseCode.SUCCESS in (code, named):
        return named
    if named == ResponseCode.FAILURE or code == ResponseCode.G2_ERROR:
        return None
    return named
