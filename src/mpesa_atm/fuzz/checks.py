"""The catalogue of every check a campaign runs: schemathesis's own that apply to this API, and the
document's rules (`answer_checks`: every answer; `probe_checks`: those that send more requests), each
with the roles it applies to.

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
    wrong_password_rejected,
)
from mpesa_atm.fuzz.violations import ContractViolation
from mpesa_atm.operations import ROLES, Role

__all__ = [
    "BUILTIN_CHECKS",
    "CHECKS",
    "CheckInfo",
    "ContractViolation",
    "Credentials",
    "Probe",
    "checks_for",
    "probing",
]

CheckFunction = Callable[[CheckContext, Response, Case], bool | None]


@dataclass(frozen=True)
class CheckInfo:
    name: str
    roles: tuple[Role, ...]
    meaning: str
    function: CheckFunction


def _builtin(name: str) -> CheckFunction:
    from schemathesis.checks import CHECKS as REGISTRY
    from schemathesis.checks import load_all_checks

    load_all_checks()
    function = REGISTRY.get_one(name)
    assert callable(function)
    return function  # type: ignore[return-value]


# Schemathesis's own checks that a campaign runs, with what they mean for this API.
BUILTIN_CHECKS: tuple[tuple[str, str], ...] = (
    ("not_a_server_error", "no answer is a 5xx"),
    ("status_code_conformance", "the HTTP status is one the document allows (200, 400, 413, 415)"),
    ("content_type_conformance", "the Content-Type is the documented application/json"),
    ("response_schema_conformance", "the answer has exactly the documented output fields, in their formats"),
    ("negative_data_rejection", "a request the schema rejects gets a 4xx, not 200"),
)

_OWN: tuple[tuple[CheckFunction, tuple[Role, ...]], ...] = (
    (json_envelope, ROLES),
    (mapped_response_code, ROLES),
    (invalid_request_not_success, ROLES),
    (third_party_reference_echoed, ("ipg",)),
    (wrong_password_rejected, ("ipg",)),
    (other_shortcode_rejected, ("ipg",)),
    (replay_is_duplicate, ROLES),
    (bank_reference_length, ("bank",)),
    (bank_date_time_format, ("bank",)),
    (optional_field_left_out, ("bank",)),
    (token_lifecycle, ("ipg",)),
)


def _catalogue() -> tuple[CheckInfo, ...]:
    builtins = tuple(CheckInfo(name, ROLES, meaning, _builtin(name)) for name, meaning in BUILTIN_CHECKS)
    own = tuple(
        CheckInfo(function.__name__, roles, (function.__doc__ or "").strip(), function)
        for function, roles in _OWN
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
