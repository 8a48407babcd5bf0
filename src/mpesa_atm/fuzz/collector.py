"""A campaign's event bus: folds each event into the CampaignResult and hands it on to the listeners,
one event at a time, since the units run in threads of their own."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

from mpesa_atm.fuzz.events import (
    CaseChecked,
    CaseSent,
    Event,
    FindingFound,
    Listener,
    Note,
    RequestSent,
    UnitProgress,
    Untested,
)
from mpesa_atm.fuzz.results import FAILURE, CampaignResult, Finding

__all__ = ["Collector"]


class Collector:
    def __init__(self, result: CampaignResult, listeners: Iterable[Listener] = ()) -> None:
        self.result = result
        self._listeners = tuple(listeners)
        self._lock = threading.Lock()
        self._findings: dict[tuple[str, str, str], Finding] = {}  # by check, operation and severity

    def emit(self, event: Event) -> None:
        with self._lock:
            self._fold(event)
            for listener in self._listeners:
                listener(event)

    def progress(self, unit: str, done: int, total: int) -> None:
        """Emits how far `unit` has got, with the number of distinct findings so far."""
        with self._lock:
            event = UnitProgress(unit, done, total, len(self._findings))
            for listener in self._listeners:
                listener(event)

    def findings(self) -> list[Finding]:
        """The findings so far, one per check and operation (a failure, else a warning): failures
        first, then by operation and check."""
        with self._lock:
            findings = list(self._findings.values())
        # One cause, one finding: a check that failed on an operation says it; its warnings there
        # (the same fault, met in answers where it only counts as a warning) would say it again.
        failed = {(f.check, f.operation) for f in findings if f.severity == FAILURE}
        kept = [f for f in findings if f.severity == FAILURE or (f.check, f.operation) not in failed]
        return sorted(kept, key=lambda f: (f.severity != FAILURE, f.operation, f.check))

    def _fold(self, event: Event) -> None:
        match event:
            case RequestSent():
                self.result.requests += 1
            case CaseSent(case=case):
                self.result.cases += 1
                self.result.sent.append(case)
            case CaseChecked(checks=checks):
                for check in checks:
                    self.result.exercised[check] = self.result.exercised.get(check, 0) + 1
            case FindingFound(finding=finding):
                key = (finding.check, finding.operation, finding.severity)
                kept = self._findings.get(key)
                if kept is None:
                    self._findings[key] = finding
                else:
                    # The most realistic case that shows it is the one to show (the first of equals).
                    shown = finding if finding.realism > kept.realism else kept
                    self._findings[key] = dataclasses.replace(shown, occurrences=kept.occurrences + 1)
            case Note(text=text):
                self.result.notes.append(text)
            case Untested(reason=reason):
                if self.result.untested is None:
                    self.result.untested = reason
