"""What a verification found: each interaction's outcome, the provider-state changes refused, and
the mismatches as Pact reported them, worded as received / expected; the same as JUnit XML.

Each mismatch is judged by the rules `fuzz` judges by (`mismatches.py`): a failure where the document
speaks, a warning where it is silent. An interaction whose mismatches are all warnings passed with
warnings ("warning"), and fails only under --strict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mpesa_atm.contracts.mismatches import Mismatch, judged, wording
from mpesa_atm.judgement import FAILURE, WARNING
from mpesa_atm.reporting import junit
from mpesa_atm.reporting.exchange import Exchange

__all__ = [
    "NOT_RUN",
    "InteractionOutcome",
    "Mismatch",
    "Report",
    "StateFailure",
    "outcomes",
    "render_outcome",
    "write_junit",
]

Status = Literal["verified", "warning", "failed", "pending", "not run"]

# Why an interaction has no verdict: the verification was stopped before it.
NOT_RUN = "not run: the verification was interrupted (Ctrl-C) before it"


@dataclass(frozen=True)
class StateFailure:
    """A provider-state change that the provider's endpoint refused or did not answer."""

    state: str
    action: str
    params: dict[str, Any]
    detail: str
    status: int | None = None  # the endpoint's answer, None when it gave none

    def __str__(self) -> str:
        params = json.dumps(self.params, sort_keys=True)
        return f"{self.action} of provider state {self.state!r} {params}: {self.detail}"


@dataclass(frozen=True)
class InteractionOutcome:
    consumer: str
    description: str
    states: tuple[str, ...]
    # verified; warning: passed, its mismatches all warnings; failed; pending: failed, but the broker
    # marks it pending; not run: the verification was interrupted before it.
    status: Status
    problems: tuple[str, ...] = ()  # what failed it: the failures, or why nothing was sent
    warnings: tuple[str, ...] = ()  # each warning with where its rule comes from
    # When the verification was recorded: what was sent and what came back (None: nothing was sent),
    # and the interaction as the pact file has it (None for a broker's pact).
    exchange: Exchange | None = None
    contract: dict[str, Any] | None = None


@dataclass
class Report:
    provider: str
    url: str
    sources: list[str]
    states_url: str
    interactions: list[InteractionOutcome] = field(default_factory=list)
    state_failures: list[StateFailure] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    publish_errors: list[str] = field(default_factory=list)
    pact_output: str = ""
    role: str = ""
    started: datetime | None = None
    duration: float = 0.0  # seconds
    options: list[tuple[str, str]] = field(default_factory=list)  # to show in a report
    exchanges: list[Exchange] = field(default_factory=list)  # every request sent, when recorded
    strict: bool = False  # --strict: an interaction with warnings fails the verification
    interrupted: bool = False  # stopped by Ctrl-C: the interactions after are "not run"

    @property
    def ok(self) -> bool:
        passed = not self.failed and not (self.strict and self.warned)
        return bool(self.interactions) and passed and not self.interrupted

    @property
    def failed(self) -> list[InteractionOutcome]:
        return [i for i in self.interactions if i.status == "failed"]

    @property
    def warned(self) -> list[InteractionOutcome]:
        """The interactions that passed with warnings (which fail only under --strict)."""
        return [i for i in self.interactions if i.status == "warning"]

    def summary(self) -> str:
        """`9 interactions: 7 verified, 2 with warnings, 0 failed` (and the pending ones)."""
        counts = {status: sum(i.status == status for i in self.interactions) for status in _MARKS}
        total = len(self.interactions)
        summary = (
            f"{total} interaction{'' if total == 1 else 's'}: {counts['verified']} verified,"
            f" {counts['warning']} with warnings, {counts['failed']} failed"
        )
        if counts["pending"]:
            summary += f", {counts['pending']} pending"
        if counts["not run"] or self.interrupted:
            summary += f", {counts['not run']} not run (interrupted)"
        if self.strict and counts["warning"]:
            summary += " (--strict: warnings fail)"
        return summary

    def render(self, *, verbose: bool = False) -> str:
        """The whole report at once: its header, each interaction, its end."""
        lines = [
            self.header(),
            *(render_outcome(outcome) for outcome in self.interactions),
            self.ending(verbose),
        ]
        return "\n".join(lines)

    def header(self) -> str:
        """What is verified, where: printed before the first interaction."""
        lines = [
            f"Verifying {self.provider} at {self.url}",
            *(f"  pacts: {source}" for source in self.sources),
            f"  provider states: {self.states_url}",
            "",
        ]
        return "\n".join(lines)

    def ending(self, verbose: bool = False, written: str | None = None) -> str:
        """The notes, the publication's errors, the files `written` and the summary: printed after the
        last interaction."""
        lines = [f"  note: {notice}" for notice in self.notices]
        lines.extend(f"  error: {error}" for error in self.publish_errors)
        lines += ["", *([written] if written else []), self.summary()]
        if verbose and self.pact_output:
            lines += ["", "Pact verifier's own report:", self.pact_output.rstrip()]
        return "\n".join(lines)


def render_outcome(outcome: InteractionOutcome) -> str:
    """One interaction's line, and under it, when it was not simply verified, why."""
    lines = [f"  {_MARKS[outcome.status]} {outcome.description}  (consumer {outcome.consumer})"]
    if outcome.status not in ("verified", "not run"):
        if outcome.states:
            lines.append(f"            given: {'; '.join(outcome.states)}")
        lines.extend(f"            {problem}" for problem in outcome.problems)
        lines.extend(f"            warning: {warning}" for warning in outcome.warnings)
    return "\n".join(lines)


_MARKS = {
    "verified": "ok     ",
    "warning": "WARNING",
    "failed": "FAILED ",
    "pending": "pending",
    "not run": "not run",
}


def outcomes(
    results: dict[str, Any],
    failures: list[StateFailure],
    contracts: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[InteractionOutcome]:
    """Each interaction's outcome from Pact's results, its mismatches judged by the shared rules;
    `contracts` are the interactions by (consumer, description), to know the code each expects."""
    outcomes = []
    for entry in results.get("interactionResults", []):
        consumer = str(entry.get("consumer", ""))
        states = tuple(str(state) for state in entry.get("providerStates", []))
        mismatch = entry.get("mismatch")
        if not mismatch:
            outcomes.append(InteractionOutcome(consumer, entry["description"], states, "verified"))
            continue
        if mismatch.get("type") == "error":
            # Pact says only that "a state change handler has failed": add the endpoint's reasons.
            problems = wording(mismatch)
            problems.extend(dict.fromkeys(str(f) for f in failures if f.state in states))
            warnings: list[str] = []
        else:
            found = judged(entry, (contracts or {}).get((consumer, str(entry["description"]))))
            problems = [m.text for m in found if m.severity == FAILURE]
            warnings = [str(m) for m in found if m.severity == WARNING]
        status: Status
        if problems:
            status = "pending" if entry.get("pending") else "failed"
        else:
            status = "warning" if warnings else "verified"
        outcomes.append(
            InteractionOutcome(
                consumer, entry["description"], states, status, tuple(problems), tuple(warnings)
            )
        )
    return outcomes


def write_junit(report: Report, path: str | Path) -> None:
    """One test case per interaction, named by its description, its class the consumer whose pact it
    is: failed with the mismatches (and the provider states given), skipped when the broker marks it
    pending or it was not run (Ctrl-C), else passed. Its warnings go in the test case's system-out,
    with the property severity=warning, and fail it (type "warning") only under --strict, as fuzz's
    JUnit does."""
    shown = [("provider", report.provider), ("url", report.url), ("provider states", report.states_url)]
    shown += [("pacts", source) for source in report.sources]
    shown += [("warnings", str(len(report.warned))), ("strict", str(report.strict).lower())]
    suite = junit.Suite(
        f"mpesa-atm verify {report.role or report.provider}",
        properties=shown,
        time=report.duration,
        timestamp=report.started,
    )
    for outcome in report.interactions:
        given = [f"given: {'; '.join(outcome.states)}"] if outcome.states else []
        warnings = [f"warning: {warning}" for warning in outcome.warnings]
        result = None
        if outcome.status == "failed":
            message = outcome.problems[0] if outcome.problems else "failed"
            result = junit.Outcome("failure", message, "mismatch", "\n".join([*given, *outcome.problems]))
        elif outcome.status == "pending":
            message = "pending: failed, but the broker marks it pending"
            result = junit.Outcome("skipped", message, text="\n".join([*given, *outcome.problems]))
        elif outcome.status == "not run":
            result = junit.Outcome("skipped", NOT_RUN)
        elif outcome.status == "warning" and report.strict:
            message = f"--strict: {outcome.warnings[0]}"
            result = junit.Outcome("failure", message, "warning", "\n".join([*given, *warnings]))
        system_out = None
        if warnings and not (outcome.status == "warning" and report.strict):
            system_out = "\n".join([*given, *warnings])
        elif given and outcome.status == "verified":
            system_out = given[0]
        suite.cases.append(
            junit.TestCase(
                outcome.consumer or report.provider,
                outcome.description,
                result,
                warned=bool(outcome.warnings),
                system_out=system_out,
                time=outcome.exchange.elapsed if outcome.exchange is not None else None,
            )
        )
    junit.write(suite, path)
