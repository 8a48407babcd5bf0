"""What the proxy saw, told as `fuzz`'s events, so that fuzz's reporters write the evidence: each
exchange is a case sent, a request answered, its checks run and its findings; the run's end is the
campaign's (console summary, JUnit, HAR, the HTML page). The verdicts are `fuzz`'s
(CampaignResult.verdict): a check no exchange exercised is not exercised, never passed.

With `--workers N` each worker's Run hands its exchanges over instead (`hand_off`: what `exchange`
was told, kept small, pickled to a file of its own when the worker stops); the main process's Run
takes every worker's (`take`) and tells its reporters, as one worker's Run would have.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mpesa_atm.fuzz.bounds import Bounds
from mpesa_atm.fuzz.checks import CHECKS
from mpesa_atm.fuzz.collector import Collector
from mpesa_atm.fuzz.curl import curl_command
from mpesa_atm.fuzz.events import (
    CampaignFinished,
    CampaignStarted,
    CaseChecked,
    CaseSent,
    FindingFound,
    Listener,
    Note,
    RequestSent,
    Untested,
)
from mpesa_atm.fuzz.page import CheckRow, HtmlReporter
from mpesa_atm.fuzz.results import CampaignResult, SentCase
from mpesa_atm.fuzz.results import Finding as CampaignFinding
from mpesa_atm.masking import PASSWORD_FIELD
from mpesa_atm.operations import Role
from mpesa_atm.proxy.findings import Finding
from mpesa_atm.proxy.judge import CLIENT_CHECK, CLIENT_CHECK_MEANING
from mpesa_atm.reporting.exchange import Exchange as WireExchange
from mpesa_atm.reporting.page import duration_text
from mpesa_atm.transport import Network

__all__ = ["NOTHING_WENT_THROUGH", "HandOff", "ProxyPage", "Run", "Told", "curl_of", "line_of"]

NOTHING_WENT_THROUGH = (
    "nothing went through the proxy: no client called the role's operations, so no rule was exercised"
)
# The checks the ledger runs across exchanges, by role (fuzz's names), and what an exchange must be
# for the ledger to read it with each: counted as exercised by the exchanges that are.
_ACROSS: dict[str, Callable[[Role, str | None], bool]] = {
    "replay_is_duplicate": lambda role, code: code in ("0", "-3"),
    "token_lifecycle": lambda role, code: role == "ipg" and code is not None,
}


def _needs(name: str) -> str:
    if name == CLIENT_CHECK:
        return "a request to one of the role's operations"
    return next((info.needs for info in CHECKS if info.name == name), "an exchange it applies to")


def line_of(
    at: datetime,
    role: Role,
    label: str,
    status: int | None,
    code: str | None,
    ms: float,
    found: Sequence[Finding],
) -> str:
    """One exchange as stdout shows it, as the mocks' access log does, with its violations marked:
    `2025-06-01T10:00:00.123+00:00 ipg POST /token-redemption 200 0 4.1 ms` and, when something broke,
    ` VIOLATIONS json_envelope (upstream, failure), request_schema_conformance (client, warning)`."""
    shown = (
        f"{at.isoformat(timespec='milliseconds')} {role} {label} {status or '-'} {code or '-'} {ms:.1f} ms"
    )
    if found:
        marks = ", ".join(f"{f.check} ({f.side}, {f.severity})" for f in found)
        shown += f" VIOLATIONS {marks}"
    return shown


@dataclass(frozen=True)
class Told:
    """What a worker's Run was told of one exchange (Run.exchange's arguments), for the main process's
    Run to be told it in turn. `wire` is None when no --har asks for the exchanges themselves."""

    wire: WireExchange | None
    status: int | None
    operation: str
    applied: tuple[str, ...]
    code: str | None
    description: str | None
    findings: tuple[Finding, ...]
    reproduce: str
    at: datetime


@dataclass(frozen=True)
class HandOff:
    """A worker's run as it hands it over when it stops: the checks its Run began with, and each
    exchange it was told of, in order."""

    checks: tuple[str, ...]
    told: tuple[Told, ...]

    @classmethod
    def read(cls, path: Path) -> HandOff:
        """The hand-off a worker wrote (the main process's own temporary folder: pickle is safe)."""
        with path.open("rb") as file:
            handed = pickle.load(file)
        if not isinstance(handed, HandOff):
            raise TypeError(f"{path}: not a worker's hand-off")
        return handed


class Run:
    """One run of the proxy, as a campaign's result: its checks, what each exchange exercised and found.
    `listeners` are fuzz's reporters (console, JUnit, HAR, page), told of each event as it happens.

    With `hand_off` (a worker's of several) the exchanges are only kept, each as a Told, and written
    to that file by `close()` when the worker stops; `wires`: with each exchange itself (for --har)."""

    def __init__(
        self,
        role: Role,
        upstream: str,
        *,
        checks: Sequence[str],
        operations: Sequence[str],
        strict: bool,
        bounds: Bounds,
        listeners: Iterable[Listener] = (),
        options: tuple[tuple[str, str], ...] = (),
        across: bool = True,
        hand_off: Path | None = None,
        wires: bool = True,
    ) -> None:
        self.role = role
        if across:  # the ledger's checks, judged across exchanges
            checks = (
                *checks,
                *(name for name in _ACROSS if any(i.name == name and role in i.roles for i in CHECKS)),
            )
        result = CampaignResult(
            role=role,
            target=upstream,
            seed=0,
            max_examples=0,
            checks=tuple(dict.fromkeys(checks)),
            operations=tuple(operations),
            phases=("proxy",),
            harness=False,
            strict=strict,
            needs={name: _needs(name) for name in checks},
            bounds=bounds,
            command="proxy",
        )
        self.collector = Collector(result, listeners)
        self._started = time.perf_counter()
        self._hand_off = hand_off
        self._wires = wires
        self._told: list[Told] = []
        self._sent: dict[str, CaseSent] = {}
        self.collector.emit(CampaignStarted(role, upstream, 0, 0, options))

    @property
    def result(self) -> CampaignResult:
        return self.collector.result

    @property
    def hands_off(self) -> bool:
        """Whether this is a worker's run of several, handing its exchanges over when it stops."""
        return self._hand_off is not None

    def note(self, text: str) -> None:
        self.collector.emit(Note(text))

    def failing(self, finding: Finding) -> bool:
        """Whether `finding` fails the run: a failure, or any finding with --strict."""
        return finding.severity == "failure" or self.result.strict

    def exchange(
        self,
        wire: WireExchange | None,
        *,
        operation: str,
        applied: Sequence[str],
        code: str | None,
        description: str | None,
        findings: Sequence[Finding],
        reproduce: str,
        at: datetime,
        status: int | None = None,
    ) -> None:
        """Tells the reporters of one exchange: `applied` the checks that read it (those of the
        ledger counted by what they need), `findings` what they found, `reproduce` its curl, `status`
        the upstream's when there is no `wire`. A worker's run only keeps it, for the main process's
        (a list's append: all the traffic waits for)."""
        if self._hand_off is not None:
            kept = wire if self._wires else None
            status = wire.status if wire is not None else status
            told = Told(
                kept, status, operation, tuple(applied), code, description, tuple(findings), reproduce, at
            )
            self._told.append(told)
            return
        collector = self.collector
        sent = self._sent.get(operation)
        if sent is None:  # one event an operation, told again: the run keeps a reference an exchange
            sent = self._sent[operation] = CaseSent(SentCase(operation, "proxy", "proxied", None))
        collector.emit(sent)
        collector.emit(RequestSent(wire))
        if wire is not None:
            status = wire.status
        across = [
            name for name, reads in _ACROSS.items() if name in self.result.checks and reads(self.role, code)
        ]
        for finding in findings:
            if finding.check not in self.result.checks:  # a check of the ledger's not foreseen
                self.result.checks = (*self.result.checks, finding.check)
                self.result.needs[finding.check] = _needs(finding.check)
        checked = tuple(dict.fromkeys([*applied, *across, *(f.check for f in findings)]))
        collector.emit(CaseChecked(operation, checked, status=status, code=code, description=description))
        for finding in findings:
            collector.emit(
                FindingFound(
                    CampaignFinding(
                        check=finding.check,
                        operation=operation,
                        phase=finding.side,
                        title=finding.title,
                        message=finding.message,
                        reproduce=(reproduce,),
                        severity=finding.severity,
                    )
                )
            )

    def close(self) -> None:
        """A worker's Run, when the worker stops: its exchanges handed over to the main process, in a
        file written whole or not at all (renamed into place)."""
        if self._hand_off is None:
            return
        handed = HandOff(self.result.checks, tuple(self._told))
        partial = self._hand_off.with_name(self._hand_off.name + ".partial")
        with partial.open("wb") as file:
            pickle.dump(handed, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, self._hand_off)

    def take(self, handed: Sequence[HandOff]) -> None:
        """The workers' exchanges told to this Run's reporters, in the order they happened across the
        workers, as if one worker had seen them all; the checks are the workers' (all alike)."""
        if handed:
            checks = tuple(dict.fromkeys(name for one in handed for name in one.checks))
            self.result.checks = checks
            self.result.needs = {name: _needs(name) for name in checks}
        everything = sorted((told for one in handed for told in one.told), key=lambda told: told.at)
        for told in everything:
            self.exchange(
                told.wire,
                operation=told.operation,
                applied=told.applied,
                code=told.code,
                description=told.description,
                findings=told.findings,
                reproduce=told.reproduce,
                at=told.at,
                status=told.status,
            )

    def finish(self) -> CampaignResult:
        """Ends the run: the findings merged (one per check, operation and severity), its duration,
        NOT TESTED when nothing went through; then the reporters write the evidence."""
        result = self.result
        if result.cases == 0:
            self.collector.emit(Untested(NOTHING_WENT_THROUGH))
        result.findings = self.collector.findings()
        result.duration = time.perf_counter() - self._started
        self.collector.emit(CampaignFinished(result))
        return result


class ProxyPage(HtmlReporter):
    """fuzz's page, for a proxy's run: its facts are the proxy's, and a check of the catalogue it does
    not run (one that sends requests of its own) says so rather than "left out"."""

    def __init__(self, path: str | Path, listening: str) -> None:
        super().__init__(path)
        self.listening = listening

    def context(self, result: CampaignResult) -> dict[str, Any]:
        context = super().context(result)
        rows: list[CheckRow] = []
        for row in context["checks"]:
            if row.name == "response_time" and row.name not in result.checks:
                row = dataclasses.replace(row, why="Not run: the proxy was given no --max-response-time.")
            elif row.name not in result.checks:
                row = dataclasses.replace(
                    row,
                    why="Not run by the proxy: it sends no request of its own, and the check probes.",
                )
            rows.append(row)
        verdict = result.verdict(CLIENT_CHECK)
        rows.insert(
            0,
            CheckRow(
                CLIENT_CHECK,
                "2.1.2.1, 2.2.2.1" if result.role == "ipg" else "3.1.2.1",
                verdict.status,
                verdict.cases,
                CLIENT_CHECK_MEANING,
                verdict.reason,
            ),
        )
        options = dict(context["facts"]).get("Options", "defaults")
        context.update(
            kind="proxy run",
            title=f"mpesa-atm proxy {result.role}",
            checks=rows,
            facts=[
                ("Upstream", result.target),
                ("Listening on", self.listening),
                ("Role", dict(context["facts"])["Role"]),
                ("Started", dict(context["facts"])["Started"]),
                ("Duration", duration_text(result.duration)),
                ("Exchanges", str(result.cases)),
                ("Bounds", result.bounds.shown()),
                ("Options", options),
            ],
        )
        return context


def curl_of(wire: WireExchange, request: dict[str, Any] | None, network: Network) -> str:
    """The exchange's request as a curl command to the upstream, its password read from a variable."""
    media_type = next((v for n, v in wire.request_headers if n.lower() == "content-type"), "application/json")
    body: Any = request if request is not None else wire.request_body
    secret = request.get(PASSWORD_FIELD) if isinstance(request, dict) else None
    return curl_command(
        wire.url,
        body,
        media_type=media_type,
        secret=secret if isinstance(secret, str) else None,
        options=network.curl_options(),
    )
