"""How a campaign is shown, from its events: text a bank engineer can act on (the console reporter),
JUnit XML (the JUnit reporter) and every exchange as HAR (the HAR reporter; the HTML page is page.py's);
render_* and write_junit also serve a CampaignResult directly."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

from mpesa_atm.fuzz.events import CampaignFinished, CampaignStarted, Event, RequestSent, UnitProgress
from mpesa_atm.fuzz.results import CampaignResult, Finding
from mpesa_atm.reporting.exchange import Exchange
from mpesa_atm.reporting.har import write_har

__all__ = [
    "ConsoleReporter",
    "HarReporter",
    "JUnitReporter",
    "render_finding",
    "render_summary",
    "write_junit",
]

_MAX_MESSAGE_LINES = 24


def _indent(text: str, prefix: str) -> str:
    lines = text.splitlines() or [""]
    if len(lines) > _MAX_MESSAGE_LINES:
        lines = [*lines[:_MAX_MESSAGE_LINES], f"... ({len(lines) - _MAX_MESSAGE_LINES} more lines)"]
    return "\n".join(prefix + line for line in lines)


def render_finding(finding: Finding) -> str:
    times = f", {finding.occurrences} times" if finding.occurrences > 1 else ""
    parts = [
        f"FAILED {finding.check}: {finding.operation} ({finding.phase}{times})",
        f"  {finding.title}",
        _indent(finding.message, "  "),
    ]
    if finding.reproduce:
        steps = len(finding.reproduce)
        parts.append("  Reproduce:" if steps == 1 else f"  Reproduce ({steps} requests, in order):")
        parts.extend(f"    {command}" for command in finding.reproduce)
    return "\n".join(parts)


def render_summary(result: CampaignResult) -> str:
    failed = sorted({finding.check for finding in result.findings})
    outcome = f"FAILED {', '.join(failed)}" if failed else "no check failed"
    return (
        f"mpesa-atm fuzz {result.role}: {result.cases} cases ({result.requests} requests) "
        f"in {result.duration:.1f} s: {outcome}; seed {result.seed}"
    )


def write_junit(result: CampaignResult, path: str | Path) -> None:
    """One test case per operation and check: failed with the finding, or passed."""
    by_key = {(f.operation, f.check): f for f in result.findings}
    operations = sorted({f.operation for f in result.findings} | set(result.operations))
    suite = ET.Element(
        "testsuite",
        name=f"mpesa-atm fuzz {result.role}",
        tests=str(len(operations) * len(result.checks)),
        failures=str(len(result.findings)),
        errors="0",
        time=f"{result.duration:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("seed", result.seed), ("target", result.target), ("cases", result.cases)):
        ET.SubElement(properties, "property", name=name, value=str(value))
    for operation in operations:
        for check in result.checks:
            testcase = ET.SubElement(suite, "testcase", classname=operation, name=check)
            finding = by_key.get((operation, check))
            if finding is not None:
                failure = ET.SubElement(testcase, "failure", message=finding.title, type=check)
                failure.text = render_finding(finding)
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


class ConsoleReporter:
    """`mpesa-atm fuzz`'s output: a line as the campaign starts, one as each unit gets a quarter further,
    then the notes, every finding and a summary line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: sys.stdout at the time of writing

    def _print(self, text: str = "") -> None:
        print(text, file=self._stream or sys.stdout, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, CampaignStarted):
            self._print(
                f"mpesa-atm fuzz {event.role}: {event.target}, {event.max_examples} examples per operation, "
                f"seed {event.seed}"
            )
        elif isinstance(event, UnitProgress):
            found = f", {event.findings} finding(s) so far" if event.findings else ""
            self._print(f"  {event.unit}: {event.done}/{event.total} cases{found}")
        elif isinstance(event, CampaignFinished):
            result = event.result
            for note in result.notes:
                self._print(f"  note: {note}")
            for finding in result.findings:
                self._print()
                self._print(render_finding(finding))
            if result.findings:
                self._print()
            self._print(render_summary(result))


class JUnitReporter:
    """Writes the campaign's result as JUnit XML to `path` when it is over."""

    def __init__(self, path: str | Path) -> None:
        self.path = path

    def __call__(self, event: Event) -> None:
        if isinstance(event, CampaignFinished):
            write_junit(event.result, self.path)


class HarReporter:
    """Writes every request of the campaign and its answer to `path` as HAR 1.2 when it is over,
    passwords masked: the cases, the checks' replays and probes, and the calls to a mock's control API."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._exchanges: list[Exchange] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, RequestSent) and event.exchange is not None:
            self._exchanges.append(event.exchange)
        elif isinstance(event, CampaignFinished):
            result = event.result
            comment = f"mpesa-atm fuzz {result.role} {result.target}, seed {result.seed}"
            write_har(self.path, self._exchanges, comment=comment)
