"""The document's rules that every answer is held to, as `@schemathesis.check` functions: they read the
case and its answer only, so they work in any schemathesis run.

A check returns True when it does not apply (schemathesis counts it as skipped), None when it passed.
"""

from __future__ import annotations

import re
from datetime import datetime

import schemathesis
from schemathesis import Case, CheckContext, Response

from mpesa_atm.codes import ResponseCode
from mpesa_atm.fuzz.violations import answer_of, excerpt, fail, is_valid_request, role_of, text

__all__ = [
    "MAPPED_CODES",
    "bank_date_time_format",
    "bank_reference_length",
    "invalid_request_not_success",
    "json_envelope",
    "mapped_response_code",
    "third_party_reference_echoed",
]

MAPPED_CODES = frozenset(code.value for code in ResponseCode)
_REFERENCE = re.compile(r"^[!-~]{1,32}$")
_DATE_TIME = re.compile(r"^[0-9]{8} [0-9]{6}$")


@schemathesis.check
def json_envelope(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every answer is a JSON object carrying output_ResponseCode and output_ResponseDesc as strings."""
    if role_of(case) is None:
        return True
    answer = answer_of(response)
    documented = "a JSON object with string output_ResponseCode and output_ResponseDesc (2.1.3, 2.2.3, 3.1.3)"
    if answer is None:
        fail("json_envelope", case, "The answer is not a JSON object", excerpt(response), documented)
    missing = [
        key for key in ("output_ResponseCode", "output_ResponseDesc") if not isinstance(answer.get(key), str)
    ]
    if missing:
        fail(
            "json_envelope",
            case,
            f"The answer lacks {', '.join(missing)}",
            excerpt(response),
            documented,
        )
    return None


@schemathesis.check
def mapped_response_code(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """output_ResponseCode is one of the codes of the Response Code Mapping (section 4)."""
    code = text(answer_of(response), "output_ResponseCode")
    if role_of(case) is None or code is None:
        return True
    if code not in MAPPED_CODES:
        fail(
            "mapped_response_code",
            case,
            "The response code is not in the Response Code Mapping",
            f"output_ResponseCode {code!r}",
            "one of 0, -1, -2, -3, -4, -5, -6, -7, -8, -9 (section 4)",
        )
    return None


@schemathesis.check
def invalid_request_not_success(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request the schema rejects (a field missing, malformed, extra, or not JSON) is never answered 0."""
    if role_of(case) is None or is_valid_request(case):
        return True
    code = text(answer_of(response), "output_ResponseCode")
    if code == ResponseCode.SUCCESS:
        fail(
            "invalid_request_not_success",
            case,
            "A request that breaks the schema was answered Success",
            f"{excerpt(response)} to a request the schema rejects",
            "an unreadable or invalid request is refused: HTTP 400 with -1 Failure, never 0 Success",
        )
    return None


@schemathesis.check
def third_party_reference_echoed(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: output_ThirdPartyReference is the request's input_ThirdPartyReference."""
    if role_of(case) != "ipg" or not isinstance(case.body, dict):
        return True
    sent = case.body.get("input_ThirdPartyReference")
    echoed = text(answer_of(response), "output_ThirdPartyReference")
    if not isinstance(sent, str) or not _REFERENCE.match(sent) or echoed is None:
        return True
    # A business outcome (HTTP 200) must echo; a refusal may also leave it empty.
    allowed = {sent} if response.status_code == 200 else {sent, ""}
    if echoed not in allowed:
        fail(
            "third_party_reference_echoed",
            case,
            "output_ThirdPartyReference does not echo the request",
            f"output_ThirdPartyReference {echoed!r} for input_ThirdPartyReference {sent!r}",
            "the request's input_ThirdPartyReference, unchanged (2.1.3.1, 2.2.3.1)",
        )
    return None


@schemathesis.check
def bank_reference_length(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: output_BankTransactionRef has exactly 32 characters."""
    reference = text(answer_of(response), "output_BankTransactionRef")
    if role_of(case) != "bank" or reference is None:
        return True
    if len(reference) != 32:
        fail(
            "bank_reference_length",
            case,
            "output_BankTransactionRef is not 32 characters long",
            f"{reference!r} ({len(reference)} characters)",
            "32 characters, e.g. '12345678123412341234123456789abc' (3.1.3.1)",
        )
    return None


@schemathesis.check
def bank_date_time_format(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: output_BankDateTime is a real calendar date and time written YYYYMMDD HHMMSS."""
    value = text(answer_of(response), "output_BankDateTime")
    if role_of(case) != "bank" or value is None:
        return True
    valid = bool(_DATE_TIME.match(value))
    if valid:
        try:
            datetime.strptime(value, "%Y%m%d %H%M%S")
        except ValueError:
            valid = False
    if not valid:
        fail(
            "bank_date_time_format",
            case,
            "output_BankDateTime is not a date and time in YYYYMMDD HH24MISS",
            repr(value),
            "a real date and time, format YYYYMMDD HH24MISS, e.g. '20190611 223210' (3.1.3.1)",
        )
    return None
