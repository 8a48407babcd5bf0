"""The catalogue of every check a campaign runs: schemathesis's own that apply to this API, and the
document's rules (`answer_checks`: every answer; `probe_checks`: those that send more requests), each
with the roles it applies to and the document section it enforces.

This module is also the public face of the checks: what a campaign or a test needs is importable here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemathesis import Case, CheckContext, Response

from mpesa_atm.fuzz.answer_checks import (
    bank_date_time_format,
    bank_reference_length,
    invalid_request_not_success,
    json_envelope,
    mapped_response_code,
    third_party_reference_echoed,
)
from mpesa_atm.fuzz.context import Credentials, Probe, probing
from mpesa_atm.fuzz.probe_checks import (
    optional_field_left_out,
    other_shortcode_rejected,
    replay_is_duplicate,
    token_lifecycle,
    unknown_token_paid,
    wrong_password_rejected,
)
from mpesa_atm.fuzz.violations import ContractViolation, is_valid_request
from mpesa_atm.operations import ROLES, Role, operations

__all__ = [
    "BUILTIN_CHECKS",
    "CHECKS",
    "CheckFunction",
    "CheckInfo",
    "ContractViolation",
    "Credentials",
    "Probe",
    "checks_for",
    "probing",
]

CheckFunction = Callable[[CheckContext, Response, Case], bool | None]


def _any_case(case: Case) -> bool:
    return True


@dataclass(frozen=True)
class CheckInfo:
    name: str
    roles: tuple[Role, ...]
    section: str  # the document's section(s) the check enforces, e.g. "3.1.3.1" or "2.1, 2.2, 3.1"
    meaning: str
    function: CheckFunction
    needs: str = "an answer"  # what a case must bring for the check to apply, for a report's "why not"
    # Whether a case the check did not skip really exercised it (schemathesis's own checks pass,
    # rather than skip, a case they do not apply to).
    applies: Callable[[Case], bool] = _any_case


# The document describes each operation in the same subsections: .1 Request Details (URL, method,
# headers), .2.1 Request Parameters, .3 Response Details - Synchronous, .3.1 Response Body Parameters.
_REQUEST_PARAMETERS = ".2.1"
_RESPONSE = ".3"
_RESPONSE_PARAMETERS = ".3.1"
_RESPONSE_CODE_MAPPING = "4"


def _each(roles: tuple[Role, ...], subsection: str = "") -> str:
    """`subsection` of every operation `roles` implement: _each(("ipg",), ".3.1") is "2.1.3.1, 2.2.3.1"."""
    return ", ".join(op.section + subsection for op in operations().values() if op.role in roles)


def _builtin(name: str) -> CheckFunction:
    from schemathesis.checks import CHECKS as REGISTRY
    from schemathesis.checks import load_all_checks

    load_all_checks()
    function = REGISTRY.get_one(name)
    assert callable(function)
    return function  # type: ignore[return-value]


# Schemathesis's own checks that a campaign runs (for both roles): name, section, what they mean here.
BUILTIN_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("not_a_server_error", _each(ROLES, _RESPONSE), "no answer is a 5xx"),
    (
        "status_code_conformance",
        _each(ROLES, _RESPONSE),
        "the HTTP status is one the document allows (200, 400, 413, 415)",
    ),
    (
        "content_type_conformance",
        _each(ROLES, _RESPONSE),
        "the Content-Type is the documented application/json",
    ),
    (
        "response_schema_conformance",
        _each(ROLES, _RESPONSE_PARAMETERS),
        "the answer has exactly the documented output fields, in their formats",
    ),
    (
        "negative_data_rejection",
        _each(ROLES, _REQUEST_PARAMETERS),
        "a request the schema rejects gets a 4xx, not 200",
    ),
)

_IPG: tuple[Role, ...] = ("ipg",)
_BANK: tuple[Role, ...] = ("bank",)
# The document's rules: the function (its docstring is its meaning), its roles and section.
_OWN: tuple[tuple[CheckFunction, tuple[Role, ...], str], ...] = (
    (json_envelope, ROLES, _each(ROLES, _RESPONSE)),
    (mapped_response_code, ROLES, _RESPONSE_CODE_MAPPING),
    (invalid_request_not_success, ROLES, _each(ROLES, _REQUEST_PARAMETERS)),
    (third_party_reference_echoed, _IPG, _each(_IPG, _RESPONSE_PARAMETERS)),
    (wrong_password_rejected, _IPG, _RESPONSE_CODE_MAPPING),  # -4 Authentication Failed
    (other_shortcode_rejected, _IPG, _RESPONSE_CODE_MAPPING),  # -5 Bank Details Invalid
    (replay_is_duplicate, ROLES, _each(ROLES)),  # each operation's duplicate check
    (bank_reference_length, _BANK, _each(_BANK, _RESPONSE_PARAMETERS)),
    (bank_date_time_format, _BANK, _each(_BANK, _RESPONSE_PARAMETERS)),
    (optional_field_left_out, _BANK, _each(_BANK, _REQUEST_PARAMETERS)),
    (token_lifecycle, _IPG, _each(_IPG)),
    (unknown_token_paid, _IPG, f"{_each(_IPG, _REQUEST_PARAMETERS)}, {_RESPONSE_CODE_MAPPING}"),
)


# What a case must bring for a check to apply: a report says it when no case of a campaign did.
_NEEDS = {
    "negative_data_rejection": "a request the schema rejects",
    "json_envelope": "an answer to one of the API's operations",
    "mapped_response_code": "an answer with an output_ResponseCode",
    "invalid_request_not_success": "a request the schema rejects",
    "third_party_reference_echoed": "an answer with output_ThirdPartyReference to a well-formed reference",
    "wrong_password_rejected": "a valid request made with the campaign's credentials",
    "other_shortcode_rejected": "a valid request made with the campaign's credentials",
    "replay_is_duplicate": "a request answered 0 Success, to replay",
    "bank_reference_length": "an answer with output_BankTransactionRef",
    "bank_date_time_format": "an answer with output_BankDateTime",
    "optional_field_left_out": "a valid request, to send with and without input_AccountNumber",
    "token_lifecycle": "the stateful run, with tokens given (--tokens) or made by the mock's /_harness"
    " control API",
    "unknown_token_paid": "the stateful run (its redemption and reversal of a token nobody issued)",
}
_APPLIES: dict[str, Callable[[Case], bool]] = {
    "negative_data_rejection": lambda case: not is_valid_request(case),
}


def _info(
    name: str, roles: tuple[Role, ...], section: str, meaning: str, function: CheckFunction
) -> CheckInfo:
    needs = _NEEDS.get(name, "an answer")
    return CheckInfo(name, roles, section, meaning, function, needs, _APPLIES.get(name, _any_case))


def _catalogue() -> tuple[CheckInfo, ...]:
    builtins = tuple(
        _info(name, ROLES, section, meaning, _builtin(name)) for name, section, meaning in BUILTIN_CHECKS
    )
    own = tuple(
        _info(function.__name__, roles, section, (function.__doc__ or "").strip(), function)
        for function, roles, section in _OWN
    )
    return builtins + own


CHECKS: tuple[CheckInfo, ...] = _catalogue()


def checks_for(role: Role, names: tuple[str, ...] | None = None) -> tuple[CheckInfo, ...]:
    """The checks that apply to `role`, all of them or only those named."""
    chosen = tuple(info for info in CHECKS if role in info.roles)
    if names is None:
        return chosen
    known = {info.name for info in CHECKS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}")
    return tuple(info for info in chosen if info.name in names)
