"""`mpesa-atm fuzz --report FILE.html`: the campaign as one page a person can read and sign off, from
its events: the verdict first, then every check of the role with its section and verdict, each
finding with its reproduction, and the charts."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mpesa_atm.fuzz.checks import CHECKS, CheckInfo, checks_for
from mpesa_atm.fuzz.events import CampaignFinished, CampaignStarted, CaseSent, Event, RequestSent
from mpesa_atm.fuzz.results import NOT_EXERCISED, CampaignResult, Finding
from mpesa_atm.operations import Role, operations_of
from mpesa_atm.reporting.exchange import answer_class
from mpesa_atm.reporting.page import duration_text, write_page
from mpesa_atm.reporting.views import Answer, exchange_charts, over_time_chart

__all__ = [
    "FEW_CASES",
    "CheckRow",
    "FindingView",
    "HtmlReporter",
    "check_rows",
    "finding_view",
    "sections_of",
]

# A check that passed on fewer cases than this passed on too little to say much: "few cases".
FEW_CASES = 3
_VERDICT_ORDER = ("failed", "warning", "few cases", "not exercised", "passed")
_ROLE_NAMES = {"bank": "bank (Token Generation)", "ipg": "iPG (Token Redemption, Token Reversal)"}
_MAX_DETAIL_LINES = 40


@dataclass(frozen=True)
class CheckRow:
    name: str
    section: str
    verdict: str  # failed, warning (only warnings found), few cases, not exercised, passed
    cases: int
    meaning: str
    why: str = ""

    @property
    def verdict_class(self) -> str:
        return self.verdict.replace(" ", "-")


@dataclass(frozen=True)
class FindingView:
    severity: str  # failure or warning
    check: str
    section: str
    operation: str
    phase: str
    occurrences: int
    title: str
    received: str
    documented: str
    details: str
    steps: tuple[str, ...]


def sections_of(role: Role, section: str) -> str:
    """The sections of `section` that concern `role`: "2.1.3, 2.2.3, 3.1.3" is "3.1.3" for a bank;
    a section of no operation (4, the response codes) stays."""
    own = tuple(op.section for op in operations_of(role))
    every = tuple(op.section for op in operations_of("ipg") + operations_of("bank"))

    def concerns(part: str, prefixes: tuple[str, ...]) -> bool:
        return any(part == prefix or part.startswith(prefix + ".") for prefix in prefixes)

    parts = [part.strip() for part in section.split(",")]
    kept = [part for part in parts if concerns(part, own) or not concerns(part, every)]
    return ", ".join(kept) or section


def check_rows(result: CampaignResult) -> list[CheckRow]:
    """Every check of the role, with the result's verdict (CampaignResult.verdict): failed (a failure,
    or a warning of a strict campaign), warning (only warnings), not exercised (and why: what it needs,
    or that the campaign was interrupted first), or passed, shown as "few cases" when fewer than
    FEW_CASES exercised it; a check left out of the campaign is not exercised, and says so."""
    rows = []
    for info in checks_for(result.role):
        info = dataclasses.replace(info, section=sections_of(result.role, info.section))
        if info.name not in result.checks:
            why = "Not run: left out of this campaign (--check, --exclude-check)."
            if info.name == "response_time" and result.bounds.max_response_time is None:
                why = "Not run: the campaign has no --max-response-time."
            rows.append(CheckRow(info.name, info.section, NOT_EXERCISED, 0, info.meaning, why))
            continue
        verdict = result.verdict(info.name)
        cases = verdict.cases
        if verdict.status == "warning":
            why = "The partner reads a point the document leaves open otherwise than the harness does."
            row = CheckRow(info.name, info.section, "warning", cases, info.meaning, why)
        elif verdict.status == NOT_EXERCISED:
            reached = not result.interrupted and result.stopped is None
            why = "" if reached else f"Not {verdict.reason.removeprefix('not ')}."
            why = why or f"Not exercised: it {verdict.reason}, and no case of this campaign brought it."
            if result.require_exercised and not result.interrupted:
                why += " The campaign requires every check exercised (--require-exercised)."
            row = CheckRow(info.name, info.section, NOT_EXERCISED, 0, info.meaning, why)
        elif verdict.status == "passed" and cases < FEW_CASES:
            why = (
                f"Passed, but only {cases} case{'s' if cases > 1 else ''} exercised it: raise --max-examples."
            )
            row = CheckRow(info.name, info.section, "few cases", cases, info.meaning, why)
        else:
            row = CheckRow(info.name, info.section, verdict.status, cases, info.meaning)
        rows.append(row)
    return sorted(rows, key=lambda row: _VERDICT_ORDER.index(row.verdict))


def _info(name: str) -> CheckInfo | None:
    return next((info for info in CHECKS if info.name == name), None)


def finding_view(finding: Finding, role: Role | None = None) -> FindingView:
    """A finding as the page shows it: the document's checks say Received and Documented; for
    schemathesis's own, the first line of its message is what was received, its rule what is documented."""
    info = _info(finding.check)
    message = finding.message.strip()
    head, documented_mark, documented = message.partition("\nDocumented: ")
    if head.startswith("Received: ") and documented_mark:
        received, details = head.removeprefix("Received: "), ""
    else:
        first, _, rest = message.partition("\n")
        received = first or finding.title
        lines = rest.strip().splitlines()
        if len(lines) > _MAX_DETAIL_LINES:
            lines = [*lines[:_MAX_DETAIL_LINES], f"... ({len(lines) - _MAX_DETAIL_LINES} more lines)"]
        details = "\n".join(lines)
        documented = info.meaning if info else ""
    return FindingView(
        severity=finding.severity,
        check=finding.check,
        section=(sections_of(role, info.section) if role else info.section) if info else "",
        operation=finding.operation,
        phase=finding.phase,
        occurrences=finding.occurrences,
        title=finding.title,
        received=received,
        documented=documented,
        details=details,
        steps=finding.reproduce,
    )


def _lead(result: CampaignResult, rows: list[CheckRow]) -> str:
    if result.untested is not None and not result.interrupted:
        return f"Not tested: {result.untested}."
    count = {verdict: sum(row.verdict == verdict for row in rows) for verdict in _VERDICT_ORDER}
    interrupted = " Interrupted (Ctrl-C): these are the results of the cases sent until then." * int(
        result.interrupted
    ) or (f" Stopped early {result.stopped}: the cases not sent are not exercised." if result.stopped else "")
    warned = ", ".join(row.name for row in rows if row.verdict == "warning")
    warnings = f" {count['warning']} with warnings only: {warned}." if warned else ""
    if count["failed"]:
        names = ", ".join(row.name for row in rows if row.verdict == "failed")
        return (
            f"{count['failed']} of {len(rows)} checks failed against {result.target}: {names}."
            f"{warnings}{interrupted}"
        )
    missing = ", ".join(result.not_exercised)
    required = (
        f" The campaign requires every check exercised (--require-exercised): {missing} were not."
        if result.require_exercised and missing and not result.interrupted
        else ""
    )
    return (
        f"No check failed against {result.target}: {count['passed']} passed, {count['warning']} with "
        f"warnings, {count['few cases']} on few cases, {count['not exercised']} not exercised, of "
        f"{len(rows)}.{required}{interrupted}"
    )


def _verdict(result: CampaignResult) -> str:
    if result.untested is not None and not result.interrupted:
        return "untested"
    if result.failed:
        return "failed"
    if result.interrupted:
        return "interrupted"
    return "warning" if result.warnings else "passed"


def _badge_note(result: CampaignResult) -> str:
    """Beside the verdict: how many checks of the campaign were not exercised (or not reached)."""
    missing = len(result.not_exercised)
    if not missing:
        return ""
    word = "not reached" if result.interrupted or result.stopped else "not exercised"
    return f"{missing} check{'' if missing == 1 else 's'} {word}"


class HtmlReporter:
    """Writes the campaign's page to `path` when it is over. `rerun` gives the command line that runs
    the same campaign with a seed (the command's own options, which a library call's may not map to);
    without it the page has no such line."""

    def __init__(self, path: str | Path, rerun: Callable[[int], str] | None = None) -> None:
        self.path = path
        self.rerun = rerun
        self._started: CampaignStarted | None = None
        self._wall = datetime.now(UTC)
        self._clock = time.perf_counter()
        self._answers: list[Answer] = []
        self._cases: list[float] = []  # seconds since the start, one per case
        self._requests: list[float] = []

    def _since_start(self) -> float:
        return time.perf_counter() - self._clock

    def __call__(self, event: Event) -> None:
        if isinstance(event, CampaignStarted):
            self._started = event
            self._wall, self._clock = datetime.now(UTC), time.perf_counter()
        elif isinstance(event, RequestSent):
            self._requests.append(self._since_start())
            exchange = event.exchange
            if exchange is not None:
                self._answers.append(Answer(exchange.label, answer_class(exchange), exchange.elapsed * 1000))
        elif isinstance(event, CaseSent):
            self._cases.append(self._since_start())
        elif isinstance(event, CampaignFinished):
            write_page(self.path, "fuzz.html", **self.context(event.result))

    def context(self, result: CampaignResult) -> dict[str, Any]:
        """What the template shows."""
        rows = check_rows(result)
        options = self._started.options if self._started else ()
        facts = [
            ("Target", result.target),
            ("Role", _ROLE_NAMES.get(result.role, result.role)),
            ("Started", self._wall.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")),
            ("Duration", duration_text(result.duration)),
            ("Seed", str(result.seed)),
            ("Examples per operation", str(result.max_examples)),
            ("Cases (requests)", f"{result.cases} ({result.requests})"),
            ("Control API", "used" if result.harness else "not used"),
            ("Bounds", result.bounds.shown() + (f"; stopped {result.stopped}" if result.stopped else "")),
            ("Options", "; ".join(f"{name} {value}" for name, value in options) or "defaults"),
        ]
        series = {
            "cases": [(seconds, index + 1) for index, seconds in enumerate(self._cases)],
            "requests": [(seconds, index + 1) for index, seconds in enumerate(self._requests)],
        }
        charts = [*exchange_charts(self._answers), over_time_chart(series, result.duration)]
        return {
            "kind": "fuzzing campaign",
            "title": f"mpesa-atm fuzz {result.role}",
            "verdict": _verdict(result),
            "badge_note": _badge_note(result),
            "lead": _lead(result, rows),
            "facts": facts,
            "rerun": self.rerun(result.seed) if self.rerun else "",
            "contents": [("checks", "Checks"), ("findings", "Findings"), ("charts", "Charts")]
            + ([("notes", "Notes")] if result.notes else []),
            "made": datetime.now(UTC),
            "checks": rows,
            "findings": [finding_view(finding, result.role) for finding in result.findings],
            "charts": charts,
            "notes": result.notes,
        }
