"""A campaign's event bus: folds each event into the CampaignResult and hands it on to the listeners,
one event at a time, since the units run in threads of their own. It also keeps the Door: whether the
partner let anything through that the checks need, or the campaign tested nothing; and tells the
campaign's Stopper how many failures there are."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from mpesa_atm.codes import MAPPED_CODES
from mpesa_atm.fuzz.bounds import Bounds, Stopper
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
from mpesa_atm.operations import Role

__all__ = ["Collector", "Door"]

# Refused by HTTP before the API: a gateway or the API wants credentials.
_AUTH_STATUSES = (401, 403)
# The iPG's refusals of the bank's credentials: -4 Authentication Failed, -5 Bank Details Invalid.
_AUTH_CODES = ("-4", "-5")
_DESCRIPTION_SHOWN = 80  # characters of an output_ResponseDesc quoted in the reason
# So many refusals at least before a campaign is said untested: a partner stricter than our formats
# may refuse a few valid cases rightly (a currency it does not serve), and a campaign of a handful of
# cases has not shown that it lets nothing through.
MIN_REFUSED = 5

# Each role's valid requests, as the reason names them, and what to check when none got through.
_VALID = {
    "bank": "valid Token Generation",
    "ipg": "valid Token Redemption or Reversal",
}
_CHECK = {
    "bank": "does the bank know the MSISDN and account? (the cases' MSISDNs are 243 and 9 random digits)",
    "ipg": "check the bank's credentials at the iPG (--username, --password, --shortcode, or"
    " MPESA_ATM_USERNAME, ...PASSWORD, ...SHORTCODE) and any header its gateway wants (-H 'Name: value')",
}
_REFUSED_BY_HTTP = (
    "are credentials or a gateway header missing? Give what it wants with -H 'Name: value'"
    + " (or --cert and --key)"
)
_NAMES = {"bank": "bank", "ipg": "iPG"}


def _answer(status: int | None, code: str | None, description: str | None) -> str:
    """An answer as a reason quotes it: -1 'Failure: account not found', with its HTTP status when that
    is not 200; HTTP 401 when it has no code."""
    if code is None:
        return f"HTTP {status}"
    words = " ".join((description or "").split())
    if len(words) > _DESCRIPTION_SHOWN:
        words = words[: _DESCRIPTION_SHOWN - 3] + "..."
    said = f"{code} {words!r}" if words else code
    return said if status == 200 else f"{said} (HTTP {status})"


@dataclass
class Door:
    """Whether the partner let anything through that the checks need. A campaign whose partner refused
    everything at its door (credentials, a gateway, unknown customers) has tested nothing, whatever its
    checks say about the refusals: `untested()` says so in one line.

    A *valid case* is a request the schema accepts, sent by the realistic phase or the stateful phase:
    those build their bodies from realistic values and the campaign's own credentials (the edge,
    boundary and schemathesis cases vary every field, credentials too, and are refused rightly). Let
    through: for a bank, a valid Token Generation answered 0; for an iPG, a valid redemption or reversal
    answered anything but -4, -5 or HTTP 401/403 (a -9 for a token it does not know has passed its
    authentication). A 5xx, an answer outside the envelope or with a code the document does not map
    ("00"), or no answer is no refusal: the partner was tested, and failed. Fewer than MIN_REFUSED
    refusals say nothing either way."""

    role: Role
    answered: int = 0  # cases answered
    refused_by_http: Counter[tuple[int | None, str | None, str | None]] = field(default_factory=Counter)
    valid: int = 0  # valid cases answered
    through: int = 0  # valid cases let through
    broken: int = 0  # valid cases answered a 5xx, outside the envelope, or not at all
    refusals: Counter[tuple[int | None, str | None, str | None]] = field(default_factory=Counter)

    def answer(self, event: CaseChecked) -> None:
        answer = (event.status, event.code, event.description)
        self.answered += 1
        if event.status in _AUTH_STATUSES:
            self.refused_by_http[answer] += 1
        if not event.valid:
            return
        self.valid += 1
        refused = event.status in _AUTH_STATUSES or (self.role == "ipg" and event.code in _AUTH_CODES)
        if refused:
            self.refusals[answer] += 1
        elif event.code not in MAPPED_CODES or event.status is None or event.status >= 500:
            self.broken += 1
        elif self.role == "ipg" or event.code == "0":
            self.through += 1
        else:
            self.refusals[answer] += 1

    def no_answer(self) -> None:
        """A case got no answer: the partner broke (not_a_server_error says it), it did not refuse."""
        self.broken += 1

    def untested(self) -> str | None:
        """Why nothing was tested, in one line (what the partner answered instead, and what to check), or
        None when something got through (or nothing valid was sent, or the partner broke)."""
        refused_by_http = sum(self.refused_by_http.values())
        if self.answered >= MIN_REFUSED and refused_by_http == self.answered:
            (_, code, description), times = self.refused_by_http.most_common(1)[0]
            statuses = sorted({status for status, _, _ in self.refused_by_http if status is not None})
            said = "" if code is None else f" {_answer(200, code, description)}"
            if said and times < self.answered:
                said = f" (most{said})"
            return (
                f"the {_NAMES[self.role]} let nothing through: every request ({self.answered}) was refused "
                f"with HTTP {' or '.join(map(str, statuses))}{said}: {_REFUSED_BY_HTTP}"
            )
        if self.valid < MIN_REFUSED or self.through or self.broken:
            return None
        (status, code, description), times = self.refusals.most_common(1)[0]
        quoted = _answer(status, code, description)
        if times == self.valid:
            answered = f"every {_VALID[self.role]} ({self.valid}) was answered {quoted}"
        else:
            answered = f"no {_VALID[self.role]} of {self.valid} got through, {times} were answered {quoted}"
        if self.role == "bank":
            answered += ", none 0"
        return f"the {_NAMES[self.role]} let nothing through: {answered}: {_CHECK[self.role]}"


class Collector:
    def __init__(
        self, result: CampaignResult, listeners: Iterable[Listener] = (), stopper: Stopper | None = None
    ) -> None:
        self.result = result
        self.stopper = stopper or Stopper(Bounds())
        self._listeners = tuple(listeners)
        self._lock = threading.Lock()
        self._findings: dict[tuple[str, str, str], Finding] = {}  # by check, operation and severity
        self.door = Door(result.role)

    def emit(self, event: Event) -> None:
        with self._lock:
            self._fold(event)
            for listener in self._listeners:
                listener(event)

    def progress(self, progress: UnitProgress) -> None:
        """Emits how far a unit's phase has got, with the number of distinct findings so far."""
        with self._lock:
            event = dataclasses.replace(progress, findings=len(self._findings))
            for listener in self._listeners:
                listener(event)

    def untested(self) -> str | None:
        """Door.untested, read under the lock."""
        with self._lock:
            return self.door.untested()

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

    def _failing(self) -> int:
        """How many distinct findings (by check and operation) fail the campaign so far: its failures,
        and its warnings too when it is strict."""
        strict = self.result.strict
        return len({(check, op) for check, op, severity in self._findings if strict or severity == FAILURE})

    def _fold(self, event: Event) -> None:
        match event:
            case RequestSent():
                self.result.requests += 1
            case CaseSent(case=case):
                self.result.cases += 1
                self.result.sent.append(case)
            case CaseChecked(operation=operation, checks=checks):
                for check in checks:
                    self.result.exercised[check] = self.result.exercised.get(check, 0) + 1
                    on = (operation, check)
                    self.result.exercised_on[on] = self.result.exercised_on.get(on, 0) + 1
                self.door.answer(event)
            case FindingFound(finding=finding):
                if finding.check == "not_a_server_error":
                    self.door.no_answer()
                key = (finding.check, finding.operation, finding.severity)
                kept = self._findings.get(key)
                if kept is None:
                    self._findings[key] = finding
                else:
                    # The most realistic case that shows it is the one to show (the first of equals).
                    shown = finding if finding.realism > kept.realism else kept
                    self._findings[key] = dataclasses.replace(shown, occurrences=kept.occurrences + 1)
                self.stopper.failed(self._failing())
            case Note(text=text):
                self.result.notes.append(text)
            case Untested(reason=reason):
                if self.result.untested is None:
                    self.result.untested = reason
