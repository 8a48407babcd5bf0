"""Property-based fuzzing of a partner's endpoints against the document: `mpesa-atm fuzz`, and the same
campaign as a library for the test suite (in process, against an ASGI app).

The events load with the package; the other names load on first use, so that `mpesa-atm` builds its
parser without importing schemathesis and Hypothesis (a quarter of a second) for commands that do not
fuzz.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mpesa_atm.fuzz import events as _events
from mpesa_atm.fuzz.events import *  # noqa: F403  (every event is public)

if TYPE_CHECKING:
    from mpesa_atm.errors import TargetUnreachable
    from mpesa_atm.fuzz.campaign import KINDS, run_campaign
    from mpesa_atm.fuzz.checks import CHECKS, CheckInfo, ContractViolation, Credentials
    from mpesa_atm.fuzz.curl import curl_command
    from mpesa_atm.fuzz.expectations import Expectation, TokenState, expect
    from mpesa_atm.fuzz.page import HtmlReporter
    from mpesa_atm.fuzz.report import (
        ConsoleReporter,
        HarReporter,
        JUnitReporter,
        render_finding,
        render_summary,
        write_junit,
    )
    from mpesa_atm.fuzz.results import CampaignResult, Finding, SentCase
    from mpesa_atm.fuzz.target import Target

_HOMES = {
    "mpesa_atm.errors": ("TargetUnreachable",),
    "mpesa_atm.fuzz.campaign": ("KINDS", "run_campaign"),
    "mpesa_atm.fuzz.checks": ("CHECKS", "CheckInfo", "ContractViolation", "Credentials"),
    "mpesa_atm.fuzz.curl": ("curl_command",),
    "mpesa_atm.fuzz.expectations": ("Expectation", "TokenState", "expect"),
    "mpesa_atm.fuzz.page": ("HtmlReporter",),
    "mpesa_atm.fuzz.report": (
        "ConsoleReporter",
        "HarReporter",
        "JUnitReporter",
        "render_finding",
        "render_summary",
        "write_junit",
    ),
    "mpesa_atm.fuzz.results": ("CampaignResult", "Finding", "SentCase"),
    "mpesa_atm.fuzz.target": ("Target",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CHECKS",
    "KINDS",
    "CampaignResult",
    "CheckInfo",
    "ConsoleReporter",
    "ContractViolation",
    "Credentials",
    "Expectation",
    "Finding",
    "HarReporter",
    "HtmlReporter",
    "JUnitReporter",
    "SentCase",
    "Target",
    "TargetUnreachable",
    "TokenState",
    "curl_command",
    "expect",
    "render_finding",
    "render_summary",
    "run_campaign",
    "write_junit",
]
__all__ += _events.__all__


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
