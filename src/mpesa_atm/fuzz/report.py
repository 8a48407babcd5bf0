"""How a campaign is shown, from its events: text a bank engineer can act on (the console reporter),
JUnit XML (the JUnit reporter) and every exchange as HAR (the HAR reporter; the HTML page is page.py's);
render_* and write_junit also serve a CampaignResult directly; render_checks is `fuzz --list-checks`."""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mpesa_atm.fuzz.events import CampaignFinished, CampaignStarted, Event, RequestSent, UnitProgress
from mpesa_atm.fuzz.results import FAILURE, NOT_EXERCISED, CampaignResult, Finding
from mpesa_atm.judgement import RULES
from mpesa_atm.reporting import junit
from mpesa_atm.reporting.exchange import Exchange
from mpesa_atm.reporting.har import write_har

if TYPE_CHECKING:  # the checks import schemathesis, which the console reporter does not need
    from mpesa_atm.fuzz.checks import CheckInfo

__all__ = [
    "ConsoleReporter",
    "HarReporter",
    "JUnitReporter",
    "render_checks",
    "render_finding",
    "render_not_exercised",
    "render_progress",
    "render_summary",
    "write_junit",
]

_MAX_MESSAGE_LINES = 24
_LISTED_WIDTH = 100  # a check's meaning, wrapped for a terminal


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


# The reasons of the checks not exercised go in the summary line when they are this short together;
# longer, the line names the checks and the console lists them with their reasons above it.
_INLINE_REASONS = 120


def _coverage(result: CampaignResult) -> str:
    """ "3 checks not exercised (token_lifecycle: needs ...; ...)", or "" when every check was."""
    missing = result.not_exercised
    if not missing:
        return ""
    count = f"{len(missing)} check{'' if len(missing) == 1 else 's'}"
    if result.interrupted or result.stopped is not None:
        return f"{count} not reached ({', '.join(missing)})"
    detailed = "; ".join(f"{check}: {reason}" for check, reason in missing.items())
    return f"{count} not exercised ({detailed if len(detailed) <= _INLINE_REASONS else ', '.join(missing)})"


def render_not_exercised(result: CampaignResult) -> str:
    """The checks not exercised with their reasons, one a line under "not exercised:", when the summary
    line has no room for the reasons; else ""."""
    missing = result.not_exercised
    coverage = _coverage(result)
    reached = not result.interrupted and result.stopped is None
    if not missing or not reached or all(f"{check}: " in coverage for check in missing):
        return ""
    return "\n".join(["  not exercised:", *(f"    {check}: {reason}" for check, reason in missing.items())])


def render_summary(result: CampaignResult) -> str:
    """One line: the verdict, the failures and warnings (by check), a bound that stopped the campaign
    early, the checks not exercised, what was sent and the seed. A partner that let nothing through is
    NOT TESTED, and the line says why."""
    if result.command == "proxy":  # what went through it, not what a campaign sent
        sent = f"{result.cases} exchange{'' if result.cases == 1 else 's'} in {result.duration:.1f} s"
    else:
        sent = f"{result.cases} cases ({result.requests} requests) in {result.duration:.1f} s"
        sent += f"; seed {result.seed}"
    head = f"mpesa-atm {result.command} {result.role}"
    if result.untested is not None and not result.interrupted:
        return f"{head}: NOT TESTED: {result.untested}; {sent}"
    parts = []
    if result.failures:
        parts.append(_counted(result.failures, "failure"))
    if result.warnings:
        parts.append(_counted(result.warnings, "warning"))
    if result.interrupted:
        verdict = "INTERRUPTED"
    elif result.failures:
        verdict = "FAILED"
    elif result.strict and result.findings:
        verdict = "FAILED (--strict: warnings fail)"
    elif result.failed:
        verdict = "FAILED (--require-exercised: every check must be exercised)"
    else:
        verdict = "PASSED"
    found = ", ".join(parts) if parts else "no check failed"
    if result.stopped is not None and not result.interrupted:
        found += f"; stopped early {result.stopped}"
    coverage = _coverage(result)
    return f"{head}: {verdict}: {found}{'; ' + coverage if coverage else ''}; {sent}"


def _not_exercised(result: CampaignResult, operation: str, check: str) -> str | None:
    """Why `check` was not exercised on `operation` (a skipped test case's message), or None if it was."""
    verdict = result.verdict(check, operation)
    if verdict.status != NOT_EXERCISED:
        return None
    reached = not result.interrupted and result.stopped is None
    return f"not exercised: {verdict.reason}" if reached else verdict.reason


def write_junit(result: CampaignResult, path: str | Path) -> None:
    """One test case per operation and check: failed with its failures, skipped when no case of that
    operation exercised it (with why: what it needs, or that an interrupted campaign never got there),
    else passed. Its warnings go in the test case's system-out, with the property severity=warning, and
    fail it (type "warning") only when the campaign is strict; a check not exercised anywhere fails
    (type "not exercised") when the campaign requires every check exercised. A partner that let
    nothing through adds a test case in error (type "untested") with why."""
    untested = result.untested if not result.interrupted else None
    shown: tuple[tuple[str, object], ...] = (
        *((("seed", result.seed),) if result.command == "fuzz" else ()),
        ("target", result.target),
        ("cases", result.cases),
        ("failures", len(result.failures)),
        ("warnings", len(result.warnings)),
        ("not exercised", len(result.not_exercised)),
        ("strict", str(result.strict).lower()),
        ("require exercised", str(result.require_exercised).lower()),
        ("interrupted", str(result.interrupted).lower()),
        ("bounds", result.bounds.shown()),
        *((("stopped", result.stopped),) if result.stopped else ()),
        *((("untested", untested),) if untested else ()),
    )
    suite = junit.Suite(
        f"mpesa-atm {result.command} {result.role}",
        properties=[(name, str(value)) for name, value in shown],
        time=result.duration,
    )
    if untested:
        error = junit.Outcome("error", untested, "untested", f"The partner was not tested: {untested}")
        suite.cases.append(junit.TestCase(f"mpesa-atm {result.command} {result.role}", "untested", error))
    suite.cases.extend(_junit_cases(result))
    junit.write(suite, path)


def _junit_cases(result: CampaignResult) -> Iterator[junit.TestCase]:
    """write_junit's test case of each operation and check."""
    by_key: dict[tuple[str, str], list[Finding]] = {}
    for finding in result.findings:
        by_key.setdefault((finding.operation, finding.check), []).append(finding)
    operations = sorted({f.operation for f in result.findings} | set(result.operations))
    required = set(result.not_exercised) if result.require_exercised and not result.interrupted else set()
    for operation in operations:
        for check in result.checks:
            findings = by_key.get((operation, check), [])
            failures = [f for f in findings if f.severity == FAILURE]
            warnings = [f for f in findings if f.severity != FAILURE]
            skipped = None if findings else _not_exercised(result, operation, check)
            outcome = None
            if failures:
                outcome = junit.Outcome("failure", failures[0].title, "failure", _rendered(failures))
            elif warnings and result.strict:
                outcome = junit.Outcome("failure", warnings[0].title, "warning", _rendered(warnings))
            elif skipped is not None and check in required:
                required_text = f"{check} {skipped}; the campaign requires every check exercised"
                outcome = junit.Outcome(
                    "failure", skipped, "not exercised", f"{required_text} (--require-exercised)"
                )
            elif skipped is not None:
                outcome = junit.Outcome("skipped", skipped)
            out = _rendered(warnings) if warnings and not (result.strict and not failures) else None
            yield junit.TestCase(operation, check, outcome, warned=bool(warnings), system_out=out)


def _rendered(findings: list[Finding]) -> str:
    return "\n\n".join(render_finding(f) for f in findings)


def render_progress(progress: UnitProgress) -> str:
    """One phase's progress in a line: "POST /token-generation boundaries: 45/120 cases (190 requests),
    2 findings so far, 12.3 s, about 20 s left"."""
    requests = f"{progress.requests} request{'' if progress.requests == 1 else 's'}"
    sent = f"{progress.done}/{progress.planned} {progress.counted}"
    if progress.counted == "cases":
        sent += f" ({requests})"
    else:
        sent += f", {progress.cases} cases ({requests})"
    found = f", {progress.findings} finding{'' if progress.findings == 1 else 's'} so far"
    left = progress.left()
    estimate = f", about {left:.0f} s left" if left is not None else ""
    return f"{progress.unit} {progress.phase}: {sent}{found if progress.findings else ''}, " + (
        f"{progress.elapsed:.1f} s{estimate}"
    )


def _sections(section: str) -> str:
    """The document's sections as the rules quote them: a top-level one is "section 4"."""
    return ", ".join(part if "." in part else f"section {part}" for part in section.split(", "))


def render_checks(checks: Sequence[CheckInfo]) -> str:
    """`mpesa-atm fuzz --list-checks`: each check with its roles, the document's sections it enforces
    and what its findings are; what it does; then each rule it holds the partner to, a failure with the
    document's section or a warning with its row of docs/spec-notes.md."""
    blocks = []
    for info in checks:
        # A check of an operator's bound (--max-response-time) has no section: its rule says whose it is.
        source = f"the document, {_sections(info.section)}" if info.section else "not the document's"
        lines = [f"{info.name} ({', '.join(info.roles)}; {source}): {info.findings}"]
        lines.extend(
            textwrap.wrap(info.meaning, width=_LISTED_WIDTH, initial_indent="  ", subsequent_indent="  ")
        )
        for name in info.rules:
            rule = RULES[name]
            lines.append(f"  - {rule.says}: a {rule.severity} ({rule.source})")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


class ConsoleReporter:
    """`mpesa-atm fuzz`'s output: a line as the campaign starts; each phase's progress; then the notes,
    every finding, the checks not exercised with why (when the summary has no room for the reasons) and
    a summary line, last: the verdict, or NOT TESTED and why.

    Progress on a terminal (`live`, by default when the stream is one) is one line rewritten in place
    as the phase goes, left on the screen when it ends; otherwise a phase's line is printed when it ends,
    and a line of the phase under way whenever `every` seconds have passed since the last line, so a
    log shows that a slow campaign is alive."""

    _REDRAW = 0.1  # seconds between two redraws of the live line: a fast partner answers far more often

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream  # None: sys.stdout at the time of writing
        self._live = live
        self._every = every
        self._clock = clock
        self._last = clock()  # when the last line (or redraw) was written
        self._drawn = False  # a live line is on the screen, not ended

    def _out(self) -> TextIO:
        return self._stream or sys.stdout

    def _is_live(self) -> bool:
        if self._live is None:
            isatty = getattr(self._out(), "isatty", None)
            self._live = bool(isatty and isatty())
        return self._live

    def _print(self, text: str = "") -> None:
        if self._drawn:
            text = "\n" + text  # the live line stays as it was drawn last
            self._drawn = False
        print(text, file=self._out(), flush=True)
        self._last = self._clock()

    def _progress(self, event: UnitProgress) -> None:
        line = f"  {render_progress(event)}"
        now = self._clock()
        if not self._is_live():
            if event.finished or now - self._last >= self._every:
                self._print(line)
            return
        if event.finished or now - self._last >= self._REDRAW:
            # \r back to the line's start, then the line, then ESC[K to clear what a longer line left; a
            # line wider than the terminal would wrap, and \r return to its last row only.
            end = "\n" if event.finished else ""
            if not event.finished:
                line = line[: shutil.get_terminal_size().columns - 1]
            self._out().write(f"\r{line}\x1b[K{end}")
            self._out().flush()
            self._drawn = not event.finished
            self._last = now

    def __call__(self, event: Event) -> None:
        if isinstance(event, CampaignStarted):
            self._print(
                f"mpesa-atm fuzz {event.role}: {event.target}, {event.max_examples} examples per operation, "
                f"seed {event.seed}"
            )
        elif isinstance(event, UnitProgress):
            self._progress(event)
        elif isinstance(event, CampaignFinished):
            self._finished(event.result)

    def _finished(self, result: CampaignResult) -> None:
        for note in result.notes:
            self._print(f"  note: {note}")
        for finding in result.findings:
            self._print()
            self._print(render_finding(finding))
        if result.findings:
            self._print()
        listed = render_not_exercised(result)
        if listed:
            self._print(listed)
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
