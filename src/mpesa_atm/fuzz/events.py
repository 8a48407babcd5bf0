"""What a campaign's phases report as they go. The collector folds these events into the result; the
console, JUnit, HTML and HAR reporters (and any other listener) consume them, one at a time and in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mpesa_atm.fuzz.results import CampaignResult, Finding, SentCase
from mpesa_atm.operations import Role
from mpesa_atm.reporting.exchange import Exchange

__all__ = [
    "CampaignFinished",
    "CampaignStarted",
    "CaseChecked",
    "CaseSent",
    "Event",
    "FindingFound",
    "Listener",
    "Note",
    "Progress",
    "RequestSent",
    "UnitProgress",
    "Untested",
]


@dataclass(frozen=True)
class CampaignStarted:
    """The options are sound and nothing is sent yet: who is fuzzed, how much, with which seed."""

    role: Role
    target: str
    seed: int
    max_examples: int
    options: tuple[tuple[str, str], ...] = ()  # the other options, as (name, value) to show


@dataclass(frozen=True)
class RequestSent:
    """A request was sent and answered (or not): a case, a probe or replay a check sent, or a call to
    the control API. `exchange` is what went over the wire, as sent (the password unmasked)."""

    exchange: Exchange | None = None


@dataclass(frozen=True)
class CaseSent:
    """A generated case went out (the probes and replays of checks are not cases)."""

    case: SentCase


@dataclass(frozen=True)
class CaseChecked:
    """The checks ran on a case's answer: `checks` are those that applied to it (the others skipped
    it, e.g. replay_is_duplicate an answer that is not 0)."""

    operation: str
    checks: tuple[str, ...]
    # How the partner answered the case, for the collector's "was anything let through": the HTTP
    # status, output_ResponseCode and output_ResponseDesc (None when the answer has none), and whether
    # the case is a valid one, a request the schema accepts with the campaign's own values and
    # credentials (the realistic and stateful phases': see collector.Door).
    status: int | None = None
    code: str | None = None
    description: str | None = None
    valid: bool = False


@dataclass(frozen=True)
class FindingFound:
    """A check failed on one case; the collector merges the findings of one check and operation."""

    finding: Finding


@dataclass(frozen=True)
class UnitProgress:
    """How far one phase of a unit (an operation's edge cases, boundary values, realistic, positive or
    negative cases; the token lifecycles' unknown token and lifecycles) has got: sent at its start, as
    each of its requests is answered, and at its end (`finished`)."""

    unit: str  # e.g. "POST /token-redemption"
    phase: str  # e.g. "boundaries"
    done: int  # the phase's cases sent (its lifecycles run, when it counts lifecycles)
    planned: int  # how many it means to send (or run)
    requests: int  # every request it sent: its cases, the checks' probes and replays, the control API's
    findings: int  # distinct findings of the whole campaign so far
    elapsed: float  # seconds since the phase started
    finished: bool = False
    counted: str = "cases"  # what done and planned count: "cases" or "lifecycles"
    cases: int = 0  # the cases sent, when the phase counts lifecycles

    def left(self) -> float | None:
        """An estimate of the seconds left at the pace so far, once a tenth of the phase (and at least
        three) is done; else None. Only an estimate: a phase's cases do not all cost alike (the boundary
        phase's currencies are sent without probes)."""
        if self.finished or self.done < max(3, self.planned // 10) or self.done >= self.planned:
            return None
        return self.elapsed / self.done * (self.planned - self.done)


@dataclass(frozen=True)
class Note:
    """Something to know about how the campaign ran: a phase skipped, a fallback taken."""

    text: str


@dataclass(frozen=True)
class Untested:
    """The partner let nothing through that the checks need (every valid case refused, or none of the
    tokens given known): `reason` says what it answered instead and what to check. The campaign ends
    with exit 2; the first reason is kept."""

    reason: str


@dataclass(frozen=True)
class CampaignFinished:
    """The campaign is over: its result, findings sorted and merged."""

    result: CampaignResult


Event = (
    CampaignStarted
    | RequestSent
    | CaseSent
    | CaseChecked
    | FindingFound
    | UnitProgress
    | Note
    | Untested
    | CampaignFinished
)
Listener = Callable[[Event], None]
# What run_campaign's progress= callback receives.
Progress = UnitProgress
