"""The rules that every answer is held to: they read the case and its answer only, so they work in any
schemathesis run. The document's own rules are `@schemathesis.check` functions; the five that keep the
names of schemathesis's own checks (not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance, negative_data_rejection) are ours, judged by the document: a refusal is an
HTTP 4xx or a non-zero output_ResponseCode, and what only breaks a choice of ours is a warning.

A check returns True when it does not apply (schemathesis counts it as skipped), None when it passed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

from mpesa_atm.codes import GIVES_A_TOKEN, MAPPED_CODES, ResponseCode
from mpesa_atm.fuzz.answer_fields import (
    description_contradiction,
    response_validator,
    schema_problems,
)
from mpesa_atm.fuzz.violations import (
    describe,
    document_break,
    documented_code,
    excerpt,
    facts_of,
    fail,
    is_valid_request,
    kind_of,
    shared_answer,
    shown,
    text,
)
from mpesa_atm.judgement import RULES

__all__ = [
    "MAPPED_CODES",
    "bank_date_time_format",
    "bank_reference_length",
    "content_type_conformance",
    "description_matches_code",
    "invalid_request_not_success",
    "json_envelope",
    "mapped_response_code",
    "negative_data_rejection",
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "third_party_reference_echoed",
]

_REFERENCE = re.compile(r"^[!-~]{1,32}$")
_DATE_TIME = re.compile(r"^[0-9]{8} [0-9]{6}$")


def _valid_request(case: Case, response: Response) -> bool:
    """is_valid_request(case), validated once for the checks of one answer that both ask it: kept for
    the same answer to the same case with the same body and media type (held, so that no id is
    reused); the checks do not change a case."""
    global _last_valid
    last = _last_valid
    if last[0] is response and last[1] is case and last[2] is case.body and last[3] == case.media_type:
        return last[4]
    valid = is_valid_request(case)
    _last_valid = (response, case, case.body, case.media_type, valid)
    return valid


_last_valid: tuple[Any, Any, Any, Any, bool] = (object(), None, None, None, False)


def not_a_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No answer is a 5xx: the document's failures are output codes in the envelope."""
    if response.status_code < 500:
        return None
    fail(
        "not_a_server_error",
        case,
        f"The partner answered with a server error (HTTP {response.status_code})",
        excerpt(response),
        "an answer in the envelope, a failure as its output_ResponseCode (-1 Failure, -2 G2 Error, ...), "
        "never a server error",
        rule="server_error",
    )


def _code_of(response: Response) -> str:
    """The answer's output_ResponseCode as a message quotes it, or what the answer has instead."""
    answer = shared_answer(response)
    code = text(answer, "output_ResponseCode")
    return f"output_ResponseCode {shown(code)}" if code is not None else describe(None, answer)


def status_code_conformance(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """The HTTP status is one of ours (200 for outcomes; 400, 408, 413, 415 for requests that cannot be
    read); the document names none."""
    facts = facts_of(case)
    if facts.role is None or response.status_code >= 500:
        return True
    ours = facts.statuses
    if ours and response.status_code not in ours:
        fail(
            "status_code_conformance",
            case,
            f"HTTP {response.status_code} is not a status the harness uses",
            f"HTTP {response.status_code} with {_code_of(response)}",
            f"one of HTTP {', '.join(map(str, ours))}: the document names no HTTP statuses, these are "
            "the harness's (docs/spec-notes.md row 2)",
            rule="http_status",
        )
    return None


def content_type_conformance(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """An answer in the envelope is labelled application/json."""
    if facts_of(case).role is None or shared_answer(response) is None:
        return True  # not JSON at all: json_envelope says so
    values = response.headers.get("content-type") or []
    media_type = (values[0] if values else "").split(";")[0].strip().lower()
    if media_type != "application/json":
        fail(
            "content_type_conformance",
            case,
            "The JSON answer is not labelled application/json",
            f"Content-Type {shown(values[0]) if values else 'absent'}",
            "Content-Type application/json: the document requires it of requests (2.1.1, 2.2.1, 3.1.1) "
            "and names none for answers; the harness labels its JSON answers so",
            rule="content_type",
        )
    return None


def negative_data_rejection(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request the schema rejects is refused with an HTTP 4xx, as the harness does; the document
    names no statuses, so a refusal by output_ResponseCode alone (HTTP 200) is the partner's choice."""
    if facts_of(case).role is None or response.status_code >= 500 or _valid_request(case, response):
        return True
    code = text(shared_answer(response), "output_ResponseCode")
    if 400 <= response.status_code < 500 or code is None or code == ResponseCode.SUCCESS:
        return None  # refused as ours are; or no envelope (json_envelope) or 0 (invalid_request_not_success)
    fail(
        "negative_data_rejection",
        case,
        f"A request the schema rejects was refused with HTTP {response.status_code}, not a 4xx",
        f"HTTP {response.status_code} with output_ResponseCode {shown(code)}",
        f"a refusal: the harness answers HTTP 400 with -1; the document names no HTTP statuses, so "
        f"HTTP {response.status_code} with a non-zero code refuses too",
        rule="http_status",
    )


def response_schema_conformance(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """The answer has the documented output fields as strings, whatever its code (failures: a field
    missing, or not a string); in the harness's formats and no others (warnings: the formats and the
    closed list are choices of ours). In a refusal an empty field passes."""
    answer = shared_answer(response)
    facts = facts_of(case)
    if facts.role is None or answer is None or response.status_code >= 500:
        return True  # no envelope: json_envelope says so; a 5xx: not_a_server_error
    validator = response_validator(facts.operation_id, response.status_code)
    required_only = validator is None
    if validator is None:
        # A status the harness does not use (status_code_conformance warns): the answer is still one of
        # the API's, and the document's Required fields are those of every answer.
        validator = response_validator(facts.operation_id, 200)
        if validator is None or text(answer, "output_ResponseCode") is None:
            return True
    problems = schema_problems(validator, answer, required_only=required_only)
    if not problems:
        return None
    rule, title, received, documented = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    fail("response_schema_conformance", case, title, received + more, documented, rule=rule)


@schemathesis.check
def json_envelope(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every answer is a JSON object carrying output_ResponseCode and output_ResponseDesc as strings."""
    if facts_of(case).role is None:
        return True
    answer = shared_answer(response)
    documented = "a JSON object with output_ResponseCode and output_ResponseDesc, strings"
    if answer is None:
        fail(
            "json_envelope",
            case,
            "The answer is not a JSON object",
            excerpt(response),
            documented,
            rule="envelope",
        )
    wrong = [
        f"{key} is absent" if key not in answer else f"{key} is {kind_of(answer[key])}, not a string"
        for key in ("output_ResponseCode", "output_ResponseDesc")
        if not isinstance(answer.get(key), str)
    ]
    if wrong:
        fail(
            "json_envelope",
            case,
            "; ".join(wrong),
            excerpt(response),
            documented,
            rule="envelope",
        )
    return None


@schemathesis.check
def mapped_response_code(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """output_ResponseCode is one of the codes of the Response Code Mapping (section 4)."""
    code = text(shared_answer(response), "output_ResponseCode")
    if facts_of(case).role is None or code is None:
        return True
    if code not in MAPPED_CODES:
        fail(
            "mapped_response_code",
            case,
            "The response code is not in the Response Code Mapping",
            f"output_ResponseCode {shown(code)}",
            "one of 0, -1, -2, -3, -4, -5, -6, -7, -8, -9",
            rule="mapped_code",
        )
    return None


@schemathesis.check
def description_matches_code(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """output_ResponseDesc is not another code's description in the Response Code Mapping (section 4):
    not "Success" on a refusal, not a refusal's description on 0, not "Duplicate" on -1."""
    answer = shared_answer(response)
    code = text(answer, "output_ResponseCode")
    if facts_of(case).role is None or code not in MAPPED_CODES or text(answer, "output_ResponseDesc") is None:
        return True
    contradiction = description_contradiction(answer)
    if contradiction is not None:
        fail("description_matches_code", case, *contradiction, rule="code_description")
    return None


@schemathesis.check
def invalid_request_not_success(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request the schema rejects is never answered 0: a failure when a required field is missing, a
    reference is longer than the document's 32 characters or the body is not a JSON object; a warning
    when it breaks only the harness's formats or Content-Type."""
    if facts_of(case).role is None or _valid_request(case, response):
        return True
    code = text(shared_answer(response), "output_ResponseCode")
    if code != ResponseCode.SUCCESS:
        return None
    broken = document_break(case)
    if broken is not None:
        rule, what = broken
        fail(
            "invalid_request_not_success",
            case,
            f"{what[0].upper()}{what[1:]} was answered 0 Success",
            f"{excerpt(response)} to {what}",
            f"such a request refused, never answered {documented_code(ResponseCode.SUCCESS)}: "
            + RULES[rule].says,
            rule=rule,
        )
    media_type = (case.media_type or "").split(";")[0]
    fail(
        "invalid_request_not_success",
        case,
        "A request outside the harness's formats was answered 0 Success",
        f"{excerpt(response)} to a request sent as {media_type or 'no Content-Type'} that the harness's "
        "schema rejects",
        "the document leaves the formats open; the harness refuses this request (HTTP 400, -1): "
        "Content-Type application/json and the formats of docs/spec-notes.md row 3",
        rule="formats",
    )


@schemathesis.check
def third_party_reference_echoed(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: output_ThirdPartyReference is the request's input_ThirdPartyReference."""
    if facts_of(case).role != "ipg" or not isinstance(case.body, dict):
        return True
    sent = case.body.get("input_ThirdPartyReference")
    answer = shared_answer(response)
    echoed = text(answer, "output_ThirdPartyReference")
    if not isinstance(sent, str) or not _REFERENCE.match(sent) or echoed is None:
        return True
    # An answer that gives something (0, or -3 with the first answer's reference) must echo; a refusal
    # may also leave it empty (it may have refused the request before reading it).
    code = text(answer, "output_ResponseCode")
    gives = code in GIVES_A_TOKEN and response.status_code < 400
    allowed = {sent} if gives else {sent, ""}
    if echoed not in allowed:
        fail(
            "third_party_reference_echoed",
            case,
            "output_ThirdPartyReference does not echo the request",
            f"output_ThirdPartyReference {shown(echoed)} for input_ThirdPartyReference {shown(sent)}",
            "the request's input_ThirdPartyReference, unchanged",
            rule="echo",
        )
    return None


def _bank_rule(answer: Mapping[str, Any] | None, value: str, rule: str) -> str | None:
    """The rule a malformed bank output field breaks: `rule` (the document's) in an answer that gives a
    token (0, or -3 with the first answer's); in a refusal, none for an empty value (a request refused
    before it was recorded has no reference) and the harness's reading for another one (the document's
    failure example, 3.1.3.3, carries a reference, but no rule rests on it: docs/spec-notes.md row 23)."""
    if text(answer, "output_ResponseCode") in GIVES_A_TOKEN:
        return rule
    return None if value == "" else "refusal_references"


@schemathesis.check
def bank_reference_length(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: output_BankTransactionRef has exactly 32 characters (a failure in an answer 0 or -3)."""
    answer = shared_answer(response)
    reference = text(answer, "output_BankTransactionRef")
    if facts_of(case).role != "bank" or reference is None:
        return True
    rule = _bank_rule(answer, reference, "bank_reference")
    if len(reference) != 32 and rule is not None:
        fail(
            "bank_reference_length",
            case,
            "output_BankTransactionRef is not 32 characters long",
            f"{shown(reference)} ({len(reference)} characters)",
            '32 characters, e.g. "12345678123412341234123456789abc"',
            rule=rule,
        )
    return None


@functools.lru_cache(maxsize=4096)
def _real_date_time(value: str) -> bool:
    """Whether `value` is a real calendar date and time written YYYYMMDD HHMMSS: strptime's
    "%Y%m%d %H%M%S" on these 15 characters, without its regular expressions. Kept for the last values
    asked (a bank's answers of one second carry the same one)."""
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
        )
    except ValueError:
        return False
    return True


@schemathesis.check
def bank_date_time_format(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: output_BankDateTime is a real calendar date and time written YYYYMMDD HHMMSS (a failure in
    an answer 0 or -3)."""
    answer = shared_answer(response)
    value = text(answer, "output_BankDateTime")
    if facts_of(case).role != "bank" or value is None:
        return True
    valid = _real_date_time(value)
    rule = _bank_rule(answer, value, "bank_date_time")
    if not valid and rule is not None:
        fail(
            "bank_date_time_format",
            case,
            "output_BankDateTime is not a date and time in YYYYMMDD HH24MISS",
            shown(value),
            'a real date and time, format YYYYMMDD HH24MISS, e.g. "20190611 223210"',
            rule=rule,
        )
    return None
