"""What a campaign found and did: its findings, the cases it sent, and the result the CLI and tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpesa_atm.operations import Role

__all__ = ["CampaignResult", "Finding", "SentCase"]


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

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.findings else 0
