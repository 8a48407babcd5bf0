"""What a verification found: each interaction's outcome, the provider-state changes refused, and
the mismatches as Pact reported them, worded as received / expected; the same as JUnit XML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mpesa_atm.reporting.exchange import Exchange

__all__ = ["InteractionOutcome", "Report", "StateFailure", "outcomes", "write_junit"]


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
    status: Literal["verified", "failed", "pending"]  # pending: failed, but the broker marks it pending
    problems: tuple[str, ...] = ()
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

    @property
    def ok(self) -> bool:
        return bool(self.interactions) and all(i.status != "failed" for i in self.interactions)

    @property
    def failed(self) -> list[InteractionOutcome]:
        return [i for i in self.interactions if i.status == "failed"]

    def render(self, *, verbose: bool = False) -> str:
        lines = [
            f"Verifying {self.provider} at {self.url}",
            *(f"  pacts: {source}" for source in self.sources),
            f"  provider states: {self.states_url}",
            "",
        ]
        marks = {"verified": "ok     ", "failed": "FAILED ", "pending": "pending"}
        for outcome in self.interactions:
            lines.append(f"  {marks[outcome.status]} {outcome.description}  (consumer {outcome.consumer})")
            if outcome.status != "verified":
                if outcome.states:
                    lines.append(f"            given: {'; '.join(outcome.states)}")
                lines.extend(f"            {problem}" for problem in outcome.problems)
        lines.extend(f"  note: {notice}" for notice in self.notices)
        lines.extend(f"  error: {error}" for error in self.publish_errors)
        counts = {status: sum(i.status == status for i in self.interactions) for status in marks}
        total = len(self.interactions)
        summary = (
            f"{total} interaction{'' if total == 1 else 's'}:"
            f" {counts['verified']} verified, {counts['failed']} failed"
        )
        if counts["pending"]:
            summary += f", {counts['pending']} pending"
        lines += ["", summary]
        if verbose and self.pact_output:
            lines += ["", "Pact verifier's own report:", self.pact_output.rstrip()]
        return "\n".join(lines)


# Pact words a value mismatch "Expected <received> (<type>) to <what the contract wants>".
_PACT_VALUE_MISMATCH = re.compile(r"Expected (?:'.*?'|\S+)(?: \(\w+\))? (to .*)$", re.DOTALL)


def _received(item: dict[str, Any], text: str) -> str:
    """A body mismatch as received / expected: `received "-1", the contract expects it to be ...`."""
    wanted = _PACT_VALUE_MISMATCH.match(text)
    if item.get("actual") is None or wanted is None:
        return text
    return f"received {item['actual']}, the contract expects it {wanted.group(1)}"


def _problems(mismatch: dict[str, Any]) -> list[str]:
    if mismatch.get("type") == "error":
        return [str(mismatch.get("message", "error"))]
    problems = []
    for item in mismatch.get("mismatches", []):
        kind = item.get("type")
        text = item.get("mismatch") or f"expected {item.get('expected')}, received {item.get('actual')}"
        if kind == "BodyMismatch":
            problems.append(f"{item.get('path') or 'body'}: {_received(item, text)}")
        elif kind == "StatusMismatch":
            problems.append(f"status: {text}")
        elif kind == "HeaderMismatch":
            problems.append(f"header {item.get('key')}: {text}")
        else:
            problems.append(f"{kind}: {text}")
    return problems


def outcomes(results: dict[str, Any], failures: list[StateFailure]) -> list[InteractionOutcome]:
    outcomes = []
    for entry in results.get("interactionResults", []):
        states = tuple(str(state) for state in entry.get("providerStates", []))
        mismatch = entry.get("mismatch")
        if not mismatch:
            outcomes.append(
                InteractionOutcome(entry.get("consumer", ""), entry["description"], states, "verified")
            )
            continue
        problems = _problems(mismatch)
        if mismatch.get("type") == "error":
            # Pact says only that "a state change handler has failed": add the endpoint's reasons.
            reasons = dict.fromkeys(str(f) for f in failures if f.state in states)
            problems.extend(reasons)
        status: Literal["failed", "pending"] = "pending" if entry.get("pending") else "failed"
        outcomes.append(
            InteractionOutcome(
                entry.get("consumer", ""), entry["description"], states, status, tuple(problems)
            )
        )
    return outcomes


def write_junit(report: Report, path: str | Path) -> None:
    """One test case per interaction, named by its description, its class the consumer whose pact it
    is: failed with the mismatches (and the provider states given), skipped when the broker marks it
    pending, else passed."""
    failed = len(report.failed)
    pending = sum(i.status == "pending" for i in report.interactions)
    suite = ET.Element(
        "testsuite",
        name=f"mpesa-atm verify {report.role or report.provider}",
        tests=str(len(report.interactions)),
        failures=str(failed),
        errors="0",
        skipped=str(pending),
        time=f"{report.duration:.3f}",
    )
    if report.started is not None:
        suite.set("timestamp", report.started.isoformat(timespec="seconds"))
    properties = ET.SubElement(suite, "properties")
    shown = [("provider", report.provider), ("url", report.url), ("provider states", report.states_url)]
    shown += [("pacts", source) for source in report.sources]
    for name, value in shown:
        ET.SubElement(properties, "property", name=name, value=value)
    for outcome in report.interactions:
        testcase = ET.SubElement(
            suite, "testcase", classname=outcome.consumer or report.provider, name=outcome.description
        )
        if outcome.exchange is not None:
            testcase.set("time", f"{outcome.exchange.elapsed:.3f}")
        given = [f"given: {'; '.join(outcome.states)}"] if outcome.states else []
        if outcome.status == "failed":
            failure = ET.SubElement(
                testcase,
                "failure",
                message=outcome.problems[0] if outcome.problems else "failed",
                type="mismatch",
            )
            failure.text = "\n".join([*given, *outcome.problems])
        elif outcome.status == "pending":
            skipped = ET.SubElement(
                testcase, "skipped", message="pending: failed, but the broker marks it pending"
            )
            skipped.text = "\n".join([*given, *outcome.problems])
        elif given:
            ET.SubElement(testcase, "system-out").text = given[0]
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
