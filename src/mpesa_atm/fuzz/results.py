"""What a campaign found and did: its findings, the cases it sent, and the result the CLI and tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpesa_atm.judgement import FAILURE, WARNING, Severity
from mpesa_atm.operations import Role

__all__ = ["FAILURE", "WARNING", "CampaignResult", "Finding", "SentCase", "Severity"]


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
    strict: bool = False  # warnings fail the campaign too
    interrupted: bool = False  # stopped by the user (Ctrl-C) before the end
    # Why the partner was not tested at all (it let no valid case through: what it answered instead and
    # what to check), or None. An untested campaign exits 2, whatever it found.
    untested: str | None = None

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == FAILURE]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == WARNING]

    @property
    def failed(self) -> bool:
        """Whether the campaign fails: a finding breaks the document, or any finding with `strict`."""
        return bool(self.failures) or (self.strict and bool(self.findings))

    @property
    def exit_code(self) -> int:
        """The command's: 130 when interrupted, 2 when the partner could not be tested, 1 when failed,
        else 0."""
        if self.interrupted:
            return 130
        if self.untested is not None:
            return 2
        return 1 if self.failed else 0
