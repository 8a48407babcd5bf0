"""Property-based fuzzing of a partner's endpoints against the document: `mpesa-atm fuzz`, and the same
campaign as a library for the test suite (in process, against an ASGI app).

The names below load on first use, so that `mpesa-atm` builds its parser without importing
schemathesis and Hypothesis (a quarter of a second) for commands that do not fuzz.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpesa_atm.fuzz.campaign import (
        KINDS,
        CampaignResult,
        Finding,
        Progress,
        SentCase,
        Target,
        TargetUnreachable,
        run_campaign,
    )
    from mpesa_atm.fuzz.checks import CHECKS, CheckInfo, ContractViolation, Credentials
    from mpesa_atm.fuzz.report import curl_command, render_finding, render_summary, write_junit

__all__ = [
    "CHECKS",
    "KINDS",
    "CampaignResult",
    "CheckInfo",
    "ContractViolation",
    "Credentials",
    "Finding",
    "Progress",
    "SentCase",
    "Target",
    "TargetUnreachable",
    "curl_command",
    "render_finding",
    "render_summary",
    "run_campaign",
    "write_junit",
]

_HOMES = {
    "campaign": (
        "KINDS",
        "CampaignResult",
        "Finding",
        "Progress",
        "SentCase",
        "Target",
        "TargetUnreachable",
        "run_campaign",
    ),
    "checks": ("CHECKS", "CheckInfo", "ContractViolation", "Credentials"),
    "report": ("curl_command", "render_finding", "render_summary", "write_junit"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
