"""What a campaign found and did: its findings, the cases it sent, and the result the CLI and tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mpesa_atm.fuzz.bounds import Bounds
from mpesa_atm.judgement import FAILURE, WARNING, Severity
from mpesa_atm.operations import Role

__all__ = [
    "FAILURE",
    "NOT_EXERCISED",
    "NOT_REACHED",
    "WARNING",
    "CampaignResult",
    "Finding",
    "SentCase",
    "Severity",
    "Status",
    "Verdict",
]

# A check's verdict: it failed (a failure, or a warning of a strict campaign), found only warnings,
# passed on the cases that exercised it, or was not exercised (no case brought what it needs).
Status = Literal["failed", "warning", "passed", "not exercised"]
NOT_EXERCISED: Status = "not exercised"
# Why a check no case exercised was not, when the campaign was interrupted before the end (or stopped
# by a bound: "not reached: the campaign stopped at its deadline (--max-time 3 s)").
NOT_REACHED = "not reached: the campaign was interrupted"


@dataclass(frozen=True)
class Finding:
    """A check that failed: where, what was received against what is documented, and how to replay it."""

    check: str
    operation: str
    phase: str
    title: str
    message: str
    reproduce: tuple[str, ...]
    occurrences: int = 1
    severity: Severity = FAILURE
    # How realistic the case that showed it is (a valid request ranks above a malformed one): of the
    # cases that fail a check, the finding shows the most realistic one's reproducer.
    realism: tuple[int, ...] = ()


@dataclass(frozen=True)
class SentCase:
    """A generated case as sent (probes and replays a check sends are not listed)."""

    operation: str
    phase: str
    kind: str
    body: Any


@dataclass(frozen=True)
class Verdict:
    """One check's verdict in a campaign: its status, and for a check not exercised, why ("needs ...",
    or NOT_REACHED); `cases` is how many cases exercised it."""

    status: Status
    reason: str = ""
    cases: int = 0


@dataclass
class CampaignResult:
    """What a campaign did and found; `exit_code` is the command's."""

    role: Role
    target: str
    seed: int
    max_examples: int
    checks: tuple[str, ...]
    operations: tuple[str, ...]  # labels, e.g. "POST /token-generation" (the partner's paths)
    phases: tuple[str, ...]
    harness: bool
    cases: int = 0
    requests: int = 0
    duration: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    sent: list[SentCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exercised: dict[str, int] = field(default_factory=dict)  # check -> cases it applied to
    # (operation, check) -> cases of that operation it applied to (JUnit's test cases are per operation)
    exercised_on: dict[tuple[str, str], int] = field(default_factory=dict)
    # check -> what a case must bring for it to apply (checks.CheckInfo.needs), for "not exercised: ..."
    needs: dict[str, str] = field(default_factory=dict)
    # Every check of the campaign must be exercised, else the campaign fails (--require-exercised).
    require_exercised: bool = False
    strict: bool = False  # warnings fail the campaign too
    interrupted: bool = False  # stopped by the user (Ctrl-C) before the end
    bounds: Bounds = field(default_factory=Bounds)
    # Why a bound stopped the campaign before its end ("at its deadline (--max-time 3 s)"), or None.
    stopped: str | None = None
    # Why the partner was not tested at all (it let no valid case through: what it answered instead and
    # what to check), or None. An untested campaign exits 2, whatever it found.
    untested: str | None = None
    # The command whose result it is: "fuzz", or "proxy" (the proxy's run, told as a campaign's events).
    command: str = "fuzz"

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == FAILURE]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == WARNING]

    def _why_not(self, check: str) -> str:
        if self.interrupted:
            return NOT_REACHED
        if self.stopped is not None:
            return f"not reached: the campaign stopped {self.stopped}"
        needs = self.needs.get(check)
        if needs is None:  # a result made by hand: the catalogue's (imported here: it imports this module)
            from mpesa_atm.fuzz.checks import CHECKS

            needs = next((info.needs for info in CHECKS if info.name == check), "a case it applies to")
        return f"needs {needs}"

    def verdict(self, check: str, operation: str | None = None) -> Verdict:
        """`check`'s verdict in this campaign, over all its operations or on `operation` only. What
        every reporter shows: failed (a failure, or any finding of a strict campaign), warning (only
        warnings), not exercised (no case applied to it; the reason says what it needs, or that the
        campaign was interrupted or stopped by a bound before it got there), else passed."""
        findings = [
            f for f in self.findings if f.check == check and (operation is None or f.operation == operation)
        ]
        if operation is None:
            cases = self.exercised.get(check, 0)
        else:
            cases = self.exercised_on.get((operation, check), 0)
        if any(f.severity == FAILURE for f in findings) or (self.strict and findings):
            return Verdict("failed", cases=cases)
        if findings:
            return Verdict("warning", cases=cases)
        if cases == 0:
            return Verdict(NOT_EXERCISED, self._why_not(check))
        return Verdict("passed", cases=cases)

    @property
    def verdicts(self) -> dict[str, Verdict]:
        """Each check of the campaign (in the order of `checks`) -> its verdict."""
        return {check: self.verdict(check) for check in self.checks}

    @property
    def not_exercised(self) -> dict[str, str]:
        """The checks of the campaign no case exercised -> why (what they need, or not reached)."""
        return {
            check: verdict.reason
            for check, verdict in self.verdicts.items()
            if verdict.status == NOT_EXERCISED
        }

    @property
    def failed(self) -> bool:
        """Whether the campaign fails: a finding breaks the document, or any finding with `strict`, or
        a check not exercised with `require_exercised` (of a campaign not interrupted: one a bound
        stopped did not exercise every check either)."""
        return (
            bool(self.failures)
            or (self.strict and bool(self.findings))
            or (self.require_exercised and not self.interrupted and bool(self.not_exercised))
        )

    @property
    def exit_code(self) -> int:
        """The command's: 130 when interrupted, 2 when the partner could not be tested, 1 when failed,
        else 0."""
        if self.interrupted:
            return 130
        if self.untested is not None:
            return 2
        return 1 if self.failed else 0
