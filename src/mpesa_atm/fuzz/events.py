"""What a campaign's phases report as they go. The collector folds these events into the result; the
console and JUnit reporters (and any other listener) consume them, one at a time and in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mpesa_atm.fuzz.results import CampaignResult, Finding, SentCase
from mpesa_atm.operations import Role

__all__ = [
    "CampaignFinished",
    "CampaignStarted",
    "CaseSent",
    "Event",
    "FindingFound",
    "Listener",
    "Note",
    "Progress",
    "RequestSent",
    "UnitProgress",
]


@dataclass(frozen=True)
class CampaignStarted:
    """The options are sound and nothing is sent yet: who is fuzzed, how much, with which seed."""

    role: Role
    target: str
    seed: int
    max_examples: int


@dataclass(frozen=True)
class RequestSent:
    """A request went out: a case, a probe or replay a check sent, or a call to the control API."""


@dataclass(frozen=True)
class CaseSent:
    """A generated case went out (the probes and replays of checks are not cases)."""

    case: SentCase


@dataclass(frozen=True)
class FindingFound:
    """A check failed on one case; the collector merges the findings of one check and operation."""

    finding: Finding


@dataclass(frozen=True)
class UnitProgress:
    """How far one unit (an operation's fuzzing, or the token lifecycles) has got."""

    unit: str  # e.g. "POST /token-redemption fuzz"
    done: int
    total: int
    findings: int  # distinct findings of the whole campaign so far


@dataclass(frozen=True)
class Note:
    """Something to know about how the campaign ran: a phase skipped, a fallback taken."""

    text: str


@dataclass(frozen=True)
class CampaignFinished:
    """The campaign is over: its result, findings sorted and merged."""

    result: CampaignResult


Event = CampaignStarted | RequestSent | CaseSent | FindingFound | UnitProgress | Note | CampaignFinished
Listener = Callable[[Event], None]
# What run_campaign's progress= callback receives.
Progress = UnitProgress
