"""How a campaign is shown, from its events: text a bank engineer can act on (the console reporter),
JUnit XML (the JUnit reporter) and every exchange as HAR (the HAR reporter; the HTML page is page.py's);
render_* and write_junit also serve a CampaignResult directly."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

from mpesa_atm.fuzz.events import CampaignFinished, CampaignStarted, Event, RequestSent, UnitProgress
from mpesa_atm.fuzz.results import FAILURE, CampaignResult, Finding
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


def _word(finding: Finding) -> str:
    return "FAILED" if finding.severity == FAILURE else "WARNING"


def render_finding(finding: Finding) -> str:
    times = f", {finding.occurrences} times" if finding.occurrences > 1 else ""
    parts = [
        f"{_word(finding)} {finding.check}: {finding.operation} ({finding.phase}{times})",
        f"  {finding.title}",
        _indent(finding.message, "  "),
    ]
    if finding.reproduce:
        steps = len(finding.reproduce)
        parts.append("  Reproduce:" if steps == 1 else f"  Reproduce ({steps} requests, in order):")
        parts.extend(f"    {command}" for command in finding.reproduce)
    return "\n".join(parts)


def _counted(findings: list[Finding], word: str) -> str:
    checks = sorted({finding.check for finding in findings})
    plural = "" if len(findings) == 1 else "s"
    return f"{len(findings)} {word}{plural} ({', '.join(checks)})"


def render_summary(result: CampaignResult) -> str:
    """One line: what was sent, the failures and warnings (by check), the verdict and the seed."""
    parts = []
    if result.failures:
        parts.append(_counted(result.failures, "failure"))
    if result.warnings:
        parts.append(_counted(result.warnings, "warning"))
    if result.interrupted:
        verdict = "INTERRUPTED"
    elif result.failed:
        verdict = "FAILED" + (" (--strict: warnings fail)" if not result.failures else "")
    else:
        verdict = "PASSED"
    found = ", ".join(parts) if parts else "no check failed"
    return (
        f"mpesa-atm fuzz {result.role}: {verdict}: {found}; {result.cases} cases ({result.requests} "
        f"requests) in {result.duration:.1f} s; seed {result.seed}"
    )


def write_junit(result: CampaignResult, path: str | Path) -> None:
    """One test case per operation and check: failed with its failures, or passed. Its warnings go in
    the test case's system-out, with the property severity=warning, and fail it (type "warning") only
    when the campaign is strict."""
    by_key: dict[tuple[str, str], list[Finding]] = {}
    for finding in result.findings:
        by_key.setdefault((finding.operation, finding.check), []).append(finding)
    operations = sorted({f.operation for f in result.findings} | set(result.operations))
    failed_cases = sum(
        any(f.severity == FAILURE or result.strict for f in findings) for findings in by_key.values()
    )
    suite = ET.Element(
        "testsuite",
        name=f"mpesa-atm fuzz {result.role}",
        tests=str(len(operations) * len(result.checks)),
        failures=str(failed_cases),
        errors="0",
        time=f"{result.duration:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    shown: tuple[tuple[str, object], ...] = (
        ("seed", result.seed),
        ("target", result.target),
        ("cases", result.cases),
        ("failures", len(result.failures)),
        ("warnings", len(result.warnings)),
        ("strict", str(result.strict).lower()),
        ("interrupted", str(result.interrupted).lower()),
    )
    for name, value in shown:
        ET.SubElement(properties, "property", name=name, value=str(value))
    for operation in operations:
        for check in result.checks:
            testcase = ET.SubElement(suite, "testcase", classname=operation, name=check)
            findings = by_key.get((operation, check), [])
            failures = [f for f in findings if f.severity == FAILURE]
            warnings = [f for f in findings if f.severity != FAILURE]
            if warnings:
                case_properties = ET.SubElement(testcase, "properties")
                ET.SubElement(case_properties, "property", name="severity", value="warning")
            if failures:
                failure = ET.SubElement(testcase, "failure", message=failures[0].title, type="failure")
                failure.text = "\n\n".join(render_finding(f) for f in failures)
            elif warnings and result.strict:
                failure = ET.SubElement(testcase, "failure", message=warnings[0].title, type="warning")
                failure.text = "\n\n".join(render_finding(f) for f in warnings)
            if warnings and not (result.strict and not failures):
                out = ET.SubElement(testcase, "system-out")
                out.text = "\n\n".join(render_finding(f) for f in warnings)
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
