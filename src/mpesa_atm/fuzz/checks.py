"""The catalogue of every check a campaign runs (`answer_checks`: every answer; `probe_checks`: those
that send more requests), each with the roles it applies to, the document section it enforces, and what
its findings are: failures (the partner breaks the document), warnings (the partner is only laxer than a
choice of ours, which the document leaves open), or either, decided finding by finding.

This module is also the public face of the checks: what a campaign or a test needs is importable here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemathesis import Case, CheckContext, Response

from mpesa_atm.fuzz.answer_checks import (
    bank_date_time_format,
    bank_reference_length,
    content_type_conformance,
    description_matches_code,
    invalid_request_not_success,
    json_envelope,
    mapped_response_code,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
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
from mpesa_atm.fuzz.response_time import response_time
from mpesa_atm.fuzz.violations import ContractViolation, is_valid_request
from mpesa_atm.operations import ROLES, Role, operations

__all__ = [
    "BOUND_CHECKS",
    "CHECKS",
    "FOLDED_UNDER",
    "CheckFunction",
    "CheckInfo",
    "ContractViolation",
    "Credentials",
    "Probe",
    "any_case",
    "checks_for",
    "probing",
]

CheckFunction = Callable[[CheckContext, Response, Case], bool | None]


def any_case(case: Case) -> bool:
    """What says that a case a check did not skip exercised it, for most checks: any case did."""
    return True


@dataclass(frozen=True)
class CheckInfo:
    name: str
    roles: tuple[Role, ...]
    section: str  # the document's section(s) the check enforces, e.g. "3.1.3.1" or "2.1, 2.2, 3.1"
    meaning: str
    function: CheckFunction
    findings: str = "failures"  # failures, warnings, or "failures or warnings" (by what was received)
    needs: str = "an answer"  # what a case must bring for the check to apply, for a report's "why not"
    # Whether a case the check did not skip really exercised it (schemathesis's own checks pass,
    # rather than skip, a case they do not apply to).
    applies: Callable[[Case], bool] = any_case
    # The rules of judgement.RULES its findings name: what it holds the partner to, and where from.
    rules: tuple[str, ...] = ()


# The document describes each operation in the same subsections: .1 Request Details (URL, method,
# headers), .2.1 Request Parameters, .3 Response Details - Synchronous, .3.1 Response Body Parameters.
_REQUEST_PARAMETERS = ".2.1"
_RESPONSE = ".3"
_RESPONSE_PARAMETERS = ".3.1"
_RESPONSE_CODE_MAPPING = "4"


def _each(roles: tuple[Role, ...], subsection: str = "") -> str:
    """`subsection` of every operation `roles` implement: _each(("ipg",), ".3.1") is "2.1.3.1, 2.2.3.1"."""
    return ", ".join(op.section + subsection for op in operations().values() if op.role in roles)


_IPG: tuple[Role, ...] = ("ipg",)
_BANK: tuple[Role, ...] = ("bank",)
_EITHER = "failures or warnings"
# The checks: the function (its docstring is its meaning), its roles, section, and what it finds.
_OWN: tuple[tuple[CheckFunction, tuple[Role, ...], str, str], ...] = (
    (not_a_server_error, ROLES, _each(ROLES, _RESPONSE), "failures"),
    (status_code_conformance, ROLES, _each(ROLES, _RESPONSE), "warnings"),
    (content_type_conformance, ROLES, _each(ROLES, _RESPONSE), "warnings"),
    (response_schema_conformance, ROLES, _each(ROLES, _RESPONSE_PARAMETERS), _EITHER),
    (negative_data_rejection, ROLES, _each(ROLES, _REQUEST_PARAMETERS), "warnings"),
    (json_envelope, ROLES, _each(ROLES, _RESPONSE), "failures"),
    (mapped_response_code, ROLES, _RESPONSE_CODE_MAPPING, "failures"),
    (description_matches_code, ROLES, _RESPONSE_CODE_MAPPING, "failures"),
    (invalid_request_not_success, ROLES, _each(ROLES, _REQUEST_PARAMETERS), _EITHER),
    (third_party_reference_echoed, _IPG, _each(_IPG, _RESPONSE_PARAMETERS), "failures"),
    # -4 Authentication Failed, -5 Bank Details Invalid
    (wrong_password_rejected, _IPG, _RESPONSE_CODE_MAPPING, "failures"),
    (other_shortcode_rejected, _IPG, _RESPONSE_CODE_MAPPING, "failures"),
    (replay_is_duplicate, ROLES, _each(ROLES), "failures"),  # each operation's duplicate check
    (bank_reference_length, _BANK, _each(_BANK, _RESPONSE_PARAMETERS), _EITHER),
    (bank_date_time_format, _BANK, _each(_BANK, _RESPONSE_PARAMETERS), _EITHER),
    (optional_field_left_out, _BANK, _each(_BANK, _REQUEST_PARAMETERS), "failures"),
    (token_lifecycle, _IPG, _each(_IPG), _EITHER),  # a refused first reversal: a warning (row 26)
    (unknown_token_paid, _IPG, f"{_each(_IPG, _REQUEST_PARAMETERS)}, {_RESPONSE_CODE_MAPPING}", "failures"),
    # The operator's bound, not the document's: no section. Only in a campaign with --max-response-time.
    (response_time, ROLES, "", "failures"),
)
# The checks of an operator's bound: a campaign runs each only when given its bound (options.py).
BOUND_CHECKS = frozenset({"response_time"})

# One cause, one finding: when a check on the left fails on an answer, the findings of the checks on
# the right about the same answer say the same thing again, and are left out.
_ANSWER_CHECKS = frozenset(
    {
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "json_envelope",
        "mapped_response_code",
        "description_matches_code",
        "third_party_reference_echoed",
        "bank_reference_length",
        "bank_date_time_format",
    }
)
FOLDED_UNDER: dict[str, frozenset[str]] = {
    "not_a_server_error": _ANSWER_CHECKS,
    "json_envelope": frozenset({"content_type_conformance", "response_schema_conformance"}),
    "mapped_response_code": frozenset({"response_schema_conformance"}),
    "bank_reference_length": frozenset({"response_schema_conformance"}),
    "bank_date_time_format": frozenset({"response_schema_conformance"}),
    "third_party_reference_echoed": frozenset({"response_schema_conformance"}),
    # A 5xx without input_AccountNumber: the precise diagnosis says what not_a_server_error would.
    "optional_field_left_out": frozenset({"not_a_server_error"}),
    # A lifecycle's long-reference redemption paid: the lifecycle's finding names the token's rule.
    "token_lifecycle": frozenset({"invalid_request_not_success"}),
    "invalid_request_not_success": frozenset(
        {"negative_data_rejection", "status_code_conformance", "response_schema_conformance"}
    ),
}


# What a case must bring for a check to apply: a report says it when no case of a campaign did.
_NEEDS = {
    "status_code_conformance": "an answer to one of the API's operations",
    "content_type_conformance": "an answer in JSON",
    "response_schema_conformance": "an answer in JSON",
    "negative_data_rejection": "a request the schema rejects",
    "json_envelope": "an answer to one of the API's operations",
    "mapped_response_code": "an answer with an output_ResponseCode",
    "description_matches_code": "an answer with a mapped output_ResponseCode and an output_ResponseDesc",
    "invalid_request_not_success": "a request the schema rejects",
    "third_party_reference_echoed": "an answer with output_ThirdPartyReference to a well-formed reference",
    # At most --auth-probes of each go out in a campaign: the first operations may spend them all.
    "wrong_password_rejected": "a valid request made with the campaign's credentials, and a probe left of"
    " --auth-probes",
    "other_shortcode_rejected": "a valid request made with the campaign's credentials, and a probe left of"
    " --auth-probes",
    "replay_is_duplicate": "a request answered 0 Success, to replay",
    "bank_reference_length": "an answer with output_BankTransactionRef",
    "bank_date_time_format": "an answer with output_BankDateTime",
    "optional_field_left_out": "a valid request answered 0 with input_AccountNumber, to send without it",
    "token_lifecycle": "tokens (--tokens) or a mock's /_harness control API to make them, and the stateful"
    " phase",
    "unknown_token_paid": "the stateful run (its redemption and reversal of a token nobody issued)",
    "response_time": "an answer, and the bound --max-response-time",
}
# The rules of judgement.RULES each check's findings name (`mpesa-atm fuzz --list-checks` shows them):
# those it names itself, and those of the helpers it reads the answer with (answer_fields, a probe's
# answer, a lifecycle's expectations).
_PROBE_ANSWER = ("required_output", "code_description")
_RULES_OF: dict[str, tuple[str, ...]] = {
    "not_a_server_error": ("server_error",),
    "status_code_conformance": ("http_status",),
    "content_type_conformance": ("content_type",),
    "response_schema_conformance": ("required_output", "formats", "refusal_references", "extra_output"),
    "negative_data_rejection": ("http_status",),
    "json_envelope": ("envelope",),
    "mapped_response_code": ("mapped_code",),
    "description_matches_code": ("code_description",),
    "invalid_request_not_success": ("required_input", "stated_limit", "formats"),
    "third_party_reference_echoed": ("echo",),
    "wrong_password_rejected": ("credentials", *_PROBE_ANSWER),
    "other_shortcode_rejected": ("credentials", *_PROBE_ANSWER),
    "replay_is_duplicate": ("duplicate", *_PROBE_ANSWER),
    "bank_reference_length": ("bank_reference", "refusal_references"),
    "bank_date_time_format": ("bank_date_time", "refusal_references"),
    "optional_field_left_out": ("optional_input",),
    "token_lifecycle": (
        "token_redeemable",
        "token_details",
        "stated_limit",
        "token_once",
        "duplicate",
        "reversal_transaction",
        "reversible_tokens",
        "token_window",
        "unknown_token",
    ),
    "unknown_token_paid": ("unknown_token",),
    "response_time": ("response_time",),
}
_APPLIES: dict[str, Callable[[Case], bool]] = {
    "negative_data_rejection": lambda case: not is_valid_request(case),
}


def _catalogue() -> tuple[CheckInfo, ...]:
    return tuple(
        CheckInfo(
            name=function.__name__,
            roles=roles,
            section=section,
            meaning=" ".join((function.__doc__ or "").split()),
            function=function,
            findings=findings,
            needs=_NEEDS.get(function.__name__, "an answer"),
            applies=_APPLIES.get(function.__name__, any_case),
            rules=_RULES_OF[function.__name__],
        )
        for function, roles, section, findings in _OWN
    )


CHECKS: tuple[CheckInfo, ...] = _catalogue()


def checks_for(
    role: Role, names: tuple[str, ...] | None = None, excluded: tuple[str, ...] = ()
) -> tuple[CheckInfo, ...]:
    """The checks that apply to `role`: all of them or only those named, less those excluded."""
    known = {info.name for info in CHECKS}
    unknown = sorted((set(names or ()) | set(excluded)) - known)
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}")
    return tuple(
        info
        for info in CHECKS
        if role in info.roles and (names is None or info.name in names) and info.name not in excluded
    )
