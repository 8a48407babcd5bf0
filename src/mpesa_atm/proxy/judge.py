"""The judgement of one exchange through the proxy, by `fuzz`'s own checks: the client's request
against the document (side "client"), and the upstream's answer by the check functions of
`fuzz/answer_checks.py` (side "upstream"), one cause one finding as `fuzz` folds them (FOLDED_UNDER).

The checks read a schemathesis Case and Response; here both are made from what was seen on the wire
rather than from what a campaign generated and sent, so a partner is judged alike by `fuzz` and by the
proxy. Only the checks that read one case and its answer run: those that send requests of their own
(probes, replays) have no place in the path of real traffic.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import requests
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, CheckContext, Response
from schemathesis.core import NOT_SET
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.overrides import StoredValue

from mpesa_atm.fuzz.campaign import role_schema
from mpesa_atm.fuzz.checks import FOLDED_UNDER, CheckInfo, ContractViolation, any_case, checks_for
from mpesa_atm.fuzz.response_time import within
from mpesa_atm.fuzz.violations import document_break, read_facts
from mpesa_atm.judgement import RULES, documented
from mpesa_atm.operations import Role, operations_of
from mpesa_atm.proxy.findings import Finding, Side
from mpesa_atm.spec import inlined, operation_definition

__all__ = ["ANSWER_CHECKS", "CLIENT_CHECK", "Judge", "Judged", "Seen"]

# The checks of fuzz that read one case and its answer, in the catalogue's order: what the proxy runs
# on every answer (response_time too, given --max-response-time).
ANSWER_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "json_envelope",
    "mapped_response_code",
    "description_matches_code",
    "invalid_request_not_success",
    "third_party_reference_echoed",
    "bank_reference_length",
    "bank_date_time_format",
)
# The proxy's own check of the client's request against the document: the request side of what
# invalid_request_not_success holds an answer to (its rules: required_input, stated_limit, formats).
CLIENT_CHECK = "request_schema_conformance"
CLIENT_CHECK_MEANING = (
    "The client's request is a JSON object, labelled application/json, with every field the document "
    "marks Required and references within its Maximum 32 characters (failures), in the harness's "
    "formats (warnings)."
)

# What each rule of a client's request wants, as its finding's "Documented:" line says it.
_CLIENT_WANTS = {
    "required_input": "a JSON object with every field the document marks Required, none empty",
    "stated_limit": "references of at most the document's Maximum 32 characters",
    "formats": "Content-Type application/json and the fields in the formats of docs/spec-notes.md row 3",
}

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Seen:
    """One exchange as the proxy saw it on the wire: the client's request and the upstream's answer
    (`status` 0 when none came), `elapsed` seconds from the request's arrival to the answer's end."""

    operation_id: str
    request_headers: Headers
    request_body: bytes
    status: int = 0
    response_headers: Headers = ()
    response_body: bytes = b""
    elapsed: float = 0.0


@dataclass(frozen=True)
class Judged:
    """What one side's judgement found (one cause, one finding) and which checks applied to it (the
    others skipped it), for the count of the exchanges that exercised each check."""

    findings: tuple[Finding, ...] = ()
    applied: tuple[str, ...] = ()


def _header(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _request_body(raw: bytes) -> Any:
    """The request body as a case holds it: the JSON value when it parses, else the bytes."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return raw


@functools.cache
def _request_schema(operation_id: str) -> dict[str, Any]:
    """The operation's request schema, its references inlined: the mocks' compiled validator takes it
    (one with references it leaves to jsonschema, ten times slower)."""
    document, post = operation_definition(operation_id)
    schema: dict[str, Any] = inlined(document, post["requestBody"]["content"]["application/json"]["schema"])
    return schema


# The slots of a schemathesis Case as _seen_case sets them, in its order; on a schemathesis whose Case
# has others, Judge.case makes its cases by Case's own constructor.
_CASE_SLOTS = (
    "operation",
    "method",
    "path",
    "id",
    "path_parameters",
    "headers",
    "cookies",
    "query",
    "body",
    "media_type",
    "multipart_content_types",
    "_meta",
    "_auth",
    "_has_explicit_auth",
    "_auth_identity",
    "_base_url",
    "_components",
    "_freeze_metadata",
)
_QUERY, _HEADER, _COOKIE, _PATH, _BODY = (
    ParameterLocation.QUERY,
    ParameterLocation.HEADER,
    ParameterLocation.COOKIE,
    ParameterLocation.PATH,
    ParameterLocation.BODY,
)


def _seen_case(operation: Any, method: str, path: str, case_id: str, body: Any, media_type: str) -> Case:
    """What `Case(operation, method, path, id=case_id, body=body, media_type=media_type)` makes, slot by
    slot, without the work its constructor does for a case of any kind (store_components reads each of
    the five containers through its location and copies it; the headers' class imported on each call):
    here the four containers are empty and the body is the parsed request, so their stored states are
    known. tests/proxy/test_judge_cost.py holds the two alike on every operation."""
    case = Case.__new__(Case)
    put = object.__setattr__
    put(case, "operation", operation)
    put(case, "method", method)
    put(case, "path", path)
    put(case, "id", case_id)
    put(case, "path_parameters", {})
    put(case, "headers", CaseInsensitiveDict())
    put(case, "cookies", {})
    put(case, "query", {})
    put(case, "body", body)
    put(case, "media_type", media_type)
    put(case, "multipart_content_types", None)
    put(case, "_meta", None)
    put(case, "_auth", None)
    put(case, "_has_explicit_auth", False)
    put(case, "_auth_identity", None)
    put(case, "_base_url", None)
    stored = dict(body) if isinstance(body, dict) else body  # store_original_state of a parsed body
    put(
        case,
        "_components",
        {
            _QUERY: StoredValue({}, False),
            _HEADER: StoredValue({}, False),
            _COOKIE: StoredValue({}, False),
            _PATH: StoredValue({}, False),
            _BODY: StoredValue(stored, False),
        },
    )
    put(case, "_freeze_metadata", False)
    return case


@functools.cache
def _body_checker() -> tuple[Callable[[dict[str, Any], Any], None], type[Exception]]:
    """The mocks' check of a request body and the problem it raises, imported on the first request
    (connexion takes a while to import), not on each."""
    from connexion.exceptions import BadRequestProblem

    from mpesa_atm.mocks.validation import check_body

    return check_body, BadRequestProblem


def _schema_problem(operation_id: str, body: Any) -> str | None:
    """Why the harness's schema refuses `body` (parsed), in the mocks' one line; None when it does not."""
    check_body, problem = _body_checker()
    try:
        check_body(_request_schema(operation_id), body)
    except problem as exc:
        return str(getattr(exc, "detail", exc))
    return None


def _rule_of(check: str, failure: Failure) -> str:
    """The rule a failure of `check` breaks: the one its ContractViolation names, else the first of the
    check's rules of its severity (schemathesis's own failures: the check's first rule)."""
    if isinstance(failure, ContractViolation):
        if failure.rule is not None:
            return failure.rule
        from mpesa_atm.fuzz.checks import CHECKS

        rules = next((info.rules for info in CHECKS if info.name == check), ())
        return next(
            (r for r in rules if RULES[r].severity == failure.verdict), rules[0] if rules else "envelope"
        )
    return "server_error" if check == "not_a_server_error" else "envelope"


class Judge:
    """Judges the exchanges of one role's operations, at the paths `path_of` gives them (the upstream's,
    as `fuzz --path` names them). Built once: the role's schema takes a while to load."""

    def __init__(
        self, role: Role, path_of: Callable[[str], str], *, max_response_time: float | None = None
    ) -> None:
        self.role = role
        schema = role_schema(role, path_of)
        self._operations = {op.id: schema[path_of(op.id)]["POST"] for op in operations_of(role)}
        self._methods: dict[str, Any] = {key: op.method.upper() for key, op in self._operations.items()}
        checks = [info for info in checks_for(role) if info.name in ANSWER_CHECKS]
        if max_response_time is not None:
            (timing,) = checks_for(role, ("response_time",))
            checks.append(dataclasses.replace(timing, function=within(max_response_time)))
        self.checks: tuple[CheckInfo, ...] = tuple(checks)
        # What upstream() runs of each check: its name, its function, and what says whether a case it
        # did not skip exercised it (None: any case does, nothing to ask).
        self._runs = tuple(
            (info.name, info.function, None if info.applies is any_case else info.applies) for info in checks
        )
        # The request of every answer's Response: no check of one answer reads it (the request is the
        # case), so one empty PreparedRequest serves them all.
        self._request = requests.PreparedRequest()
        # The cases' ids (nothing of the proxy reads them; schemathesis's random ones cost more than the
        # rest of a case), and whether this schemathesis's Case is the one _seen_case knows.
        self._ids = itertools.count(1)
        self._direct = tuple(Case.__slots__) == _CASE_SLOTS
        self._direct_response = tuple(Response.__slots__) == _RESPONSE_SLOTS
        for op in operations_of(role):  # the request validators built now, not on the first call
            _schema_problem(op.id, {})
        self._warm()

    def _warm(self) -> None:
        """A few exchanges of each operation judged now and forgotten, so that what the checks build on
        first use (the answers' compiled schemas, the document read for them) is built before the
        first call rather than in it: a new worker's first call took about 20 ms more (in process,
        a quiet machine), and a worker started under load held its first calls for hundreds."""
        json_headers = (("content-type", "application/json"),)
        for op in operations_of(self.role):
            fields = _request_schema(op.id).get("properties", {})
            request = json.dumps(dict.fromkeys(fields, "1")).encode()  # every field, the formats' misses
            statuses = read_facts(self._operations[op.id].definition.raw).statuses  # as the checks read them
            for status in statuses or (200,):
                code, description = ("0", "Success") if status == 200 else ("-1", "Failure")
                answer = json.dumps(
                    {"output_ResponseCode": code, "output_ResponseDesc": description}
                ).encode()
                seen = Seen(op.id, json_headers, request, status, json_headers, answer)
                case = self.case(seen)
                self.client(seen, case, "warm-up")
                self.upstream(seen, case, "warm-up")

    @property
    def check_names(self) -> tuple[str, ...]:
        """Every check the proxy runs on an exchange: the client's, then the answer's."""
        return (CLIENT_CHECK, *(info.name for info in self.checks))

    def case(self, seen: Seen) -> Case:
        """The request as a case of its operation: its body (the JSON value, or the bytes when it is no
        JSON) and its Content-Type."""
        media_type = _header(seen.request_headers, "content-type") or ""
        operation = self._operations[seen.operation_id]
        method = self._methods[seen.operation_id]
        body = _request_body(seen.request_body)
        case_id = f"P{next(self._ids)}"
        if self._direct:
            return _seen_case(operation, method, operation.path, case_id, body, media_type)
        # What operation.Case(body=..., media_type=...) makes, without its way through the schema's
        # make_case (its headers copied twice, its media type looked at when it is given).
        return Case(operation, method, operation.path, id=case_id, body=body, media_type=media_type)

    def client(self, seen: Seen, case: Case, exchange_id: str) -> Judged:
        """The client's request against the document: a failure where it breaks the document (not a JSON
        object, a Required field missing or empty, a reference over 32 characters), a warning where it
        breaks only the harness's formats or Content-Type (the document leaves them open)."""
        broken = document_break(case)
        if broken is not None:
            rule, what = broken
            return Judged(
                (self._client_finding(rule, f"The client sent {what}", what, exchange_id),), (CLIENT_CHECK,)
            )
        media_type = (case.media_type or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            received = f"a request sent as {media_type or 'no Content-Type'}"
            title = "The request is not labelled application/json"
        else:
            problem = _schema_problem(seen.operation_id, case.body)
            if problem is None:
                return Judged((), (CLIENT_CHECK,))
            received = f"a request the harness's schema refuses: {problem}"
            title = "The request is outside the harness's formats"
        return Judged((self._client_finding("formats", title, received, exchange_id),), (CLIENT_CHECK,))

    def _client_finding(self, rule: str, title: str, received: str, exchange_id: str) -> Finding:
        message = f"Received: {received}\nDocumented: {documented(rule, _CLIENT_WANTS[rule])}"
        return Finding(rule, CLIENT_CHECK, "client", title, message, (exchange_id,))

    def upstream(self, seen: Seen, case: Case, exchange_id: str) -> Judged:
        """The upstream's answer by fuzz's checks of one answer; the findings a failed check's
        FOLDED_UNDER names for the same answer are left out, as `fuzz` leaves them out."""
        if self._direct_response:
            response = _seen_response(seen, self._request)
        else:
            response = Response(
                seen.status,
                _headers_by_name(seen.response_headers),
                seen.response_body,
                self._request,
                seen.elapsed,
                True,
            )
        # These checks read the case and its answer only (fuzz/answer_checks.py): no context is used.
        context = cast(CheckContext, None)
        applied: list[str] = []
        failed: list[tuple[str, Failure]] = []
        for name, function, applies in self._runs:
            try:
                skipped = function(context, response, case)
            except FailureGroup as group:
                applied.append(name)
                failed.extend((name, failure) for failure in group.exceptions if isinstance(failure, Failure))
                continue
            except Failure as failure:
                applied.append(name)
                failed.append((name, failure))
                continue
            if not skipped and (applies is None or applies(case)):
                applied.append(name)
        if not failed:
            return Judged((), tuple(applied))
        folded = {name for check, _ in failed for name in FOLDED_UNDER.get(check, ()) if name != check}
        findings = tuple(
            _upstream_finding(check, failure, exchange_id) for check, failure in failed if check not in folded
        )
        return Judged(findings, tuple(applied))


def _headers_by_name(headers: Headers) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    return by_name


# The slots of a schemathesis Response as _seen_response sets them; on a schemathesis whose Response
# has others, Judge.upstream makes its answers by Response's own constructor.
_RESPONSE_SLOTS = (
    "status_code",
    "headers",
    "content",
    "content_size",
    "request",
    "elapsed",
    "verify",
    "_deserialized",
    "message",
    "http_version",
    "encoding",
    "stream_cut_short",
    "_encoded_body",
    "_override",
)


def _seen_response(seen: Seen, request: requests.PreparedRequest) -> Response:
    """What `Response(seen.status, _headers_by_name(seen.response_headers), seen.response_body,
    request, seen.elapsed, True)` makes, slot by slot, without lowercasing the headers' names twice
    and checking each value is a list (they are, made here). tests/proxy/test_judge_cost.py holds
    the two alike."""
    response = Response.__new__(Response)
    response.status_code = seen.status
    response.headers = _headers_by_name(seen.response_headers)
    content = seen.response_body
    response.content = content
    response.content_size = len(content or b"")
    response.request = request
    response.elapsed = seen.elapsed
    response.verify = True
    response._deserialized = NOT_SET
    response._encoded_body = None
    response.message = ""
    response.http_version = "1.1"
    response.encoding = None
    response.stream_cut_short = False
    response._override = None
    return response


def _upstream_finding(check: str, failure: Failure, exchange_id: str) -> Finding:
    side: Side = "upstream"
    return Finding(
        _rule_of(check, failure), check, side, failure.title, failure.message or "", (exchange_id,)
    )
