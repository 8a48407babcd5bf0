"""One unit of a campaign, run in a thread of its own (an operation's fuzzing, or the token lifecycles):
its session and history, and how it sends a case, runs the checks on the answer and emits what happened.
The phases are functions of a Unit."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from schemathesis import Case, CheckContext, Response
from schemathesis.core.failures import Failure, FailureGroup

from mpesa_atm.fuzz.cases import Fresh
from mpesa_atm.fuzz.checks import FOLDED_UNDER, CheckFunction, CheckInfo, ContractViolation, Probe, probing
from mpesa_atm.fuzz.collector import Collector
from mpesa_atm.fuzz.curl import with_variables
from mpesa_atm.fuzz.events import CaseChecked, CaseSent, Event, FindingFound, RequestSent, UnitProgress
from mpesa_atm.fuzz.results import FAILURE, Finding, SentCase
from mpesa_atm.fuzz.target import (
    NoAnswer,
    Target,
    Timed,
    call_control,
    open_session,
    reproduce,
    response_code,
    send,
)
from mpesa_atm.fuzz.violations import is_valid_request, operation_id_of, required_fields
from mpesa_atm.fuzz.wrong_target import WrongTargetWatch
from mpesa_atm.judgement import documented

__all__ = ["Campaign", "PhaseCount", "Stop", "Unit"]

T = TypeVar("T")
log = logging.getLogger("mpesa_atm.fuzz")
_LOGGED: set[type[BaseException]] = set()  # the kinds of error a stopped unit ended with, logged once


@dataclass(frozen=True)
class Campaign:
    """What the units of one campaign share: the target, the options, the schema and the collector."""

    target: Target
    seed: int
    max_examples: int
    checks: tuple[CheckInfo, ...]
    currencies: tuple[str, ...]
    harness: bool  # whether the target's control API may be used
    schema: schemathesis.BaseSchema  # the role's document, each operation at the partner's path
    collector: Collector

    def operation(self, operation_id: str) -> Any:
        return self.schema[self.target.path(operation_id)]["POST"]


class Stop(Exception):
    """The partner stopped answering during a unit: recorded as a finding, the unit ends."""


def _ends_a_stopped_unit(exc: BaseException) -> bool:
    """Whether `exc` is how a unit's Hypothesis test ends once the unit stopped: a Stop, Hypothesis's
    Flaky around it, or a group of those."""
    if isinstance(exc, Stop | Flaky):
        return True
    return isinstance(exc, BaseExceptionGroup) and all(_ends_a_stopped_unit(e) for e in exc.exceptions)


def _hypothesis_settings(examples: int) -> settings:
    """A unit's Hypothesis settings, the same whatever profile is loaded: settings() would inherit the
    loaded one's (the "ci" profile Hypothesis loads when CI is set, or a user's own), and a profile's
    backend decides the cases (hypothesis-urandom ignores the seed). So every field that changes what
    is sent or shown is given, over Hypothesis's default profile rather than the loaded one."""
    return settings(
        settings.get_profile("default"),
        max_examples=examples,
        phases=[Phase.explicit, Phase.generate],
        backend="hypothesis",
        derandomize=False,  # the seed decides (and @seed wins over it anyway)
        # No example database: replaying the failures of earlier runs first would make a campaign send
        # other cases than its printed seed reproduces, and the partner may have changed since. The
        # seed is the way to run a campaign again. (Hypothesis's other caches: command.py.)
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,  # a failure's blob reproduces a Hypothesis test, not a campaign: the seed does
    )


def _plain(body: Any) -> Any:
    """A body as it can be compared between runs (NOT_SET for no body)."""
    if isinstance(body, (dict, list, str, bytes, int, float, bool)) or body is None:
        return body
    return repr(body)


def _realism(case: Case) -> tuple[int, ...]:
    """How realistic a case is, to rank the cases that show one finding: a valid request first, then a
    JSON object with more of the required fields, strings."""
    body = case.body if isinstance(case.body, dict) else None
    required = required_fields(operation_id_of(case))
    present = sum(1 for name in required if body is not None and isinstance(body.get(name), str))
    return (int(is_valid_request(case)), int(body is not None), present)


def _description(response: Response) -> str | None:
    """The answer's output_ResponseDesc, or None."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    said = body.get("output_ResponseDesc") if isinstance(body, dict) else None
    return said if isinstance(said, str) else None


def _noting(info: CheckInfo, applied: list[str], failed: list[tuple[str, Failure]]) -> CheckFunction:
    """`info`'s check, noting its name in `applied` when it applies to the case (it fails, or it
    passes rather than skipping it), for the report's count of the cases that exercised each check,
    and its failure in `failed` (so that all the checks of a case run in one validate_response)."""

    @functools.wraps(info.function)
    def check(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        try:
            skipped = info.function(ctx, response, case)
        except FailureGroup as group:
            applied.append(info.name)
            failed.extend((info.name, failure) for failure in group.exceptions)
            return None
        except Failure as failure:
            applied.append(info.name)
            failed.append((info.name, failure))
            return None
        if not skipped and info.applies(case):
            applied.append(info.name)
        return skipped

    return check


_BEAT = 1.0  # seconds between two reports of a phase's progress while no answer comes


def _beat(collector: Collector, counting: PhaseCount, stop: threading.Event) -> None:
    """Reports `counting`'s progress every _BEAT seconds until `stop` is set."""
    while not stop.wait(_BEAT):
        collector.progress(counting.progress())


class PhaseCount:
    """What one phase of a unit has sent so far, for its progress: every case and request (a probe, a
    replay, a call to the control API), and the lifecycles run when it counts those."""

    def __init__(self, unit: str, phase: str, planned: int, counted: str = "cases") -> None:
        self.unit, self.phase, self.planned, self.counted = unit, phase, planned, counted
        self.cases = 0
        self.requests = 0
        self.lifecycles = 0
        self.started = time.perf_counter()

    def progress(self, finished: bool = False) -> UnitProgress:
        done = self.cases if self.counted == "cases" else self.lifecycles
        elapsed = time.perf_counter() - self.started
        return UnitProgress(
            self.unit,
            self.phase,
            done,
            self.planned,
            self.requests,
            findings=0,  # the collector counts them
            elapsed=elapsed,
            finished=finished,
            counted=self.counted,
            cases=self.cases,
        )


class Unit:
    def __init__(
        self,
        campaign: Campaign,
        name: str,
        phase: str,
        operation_ids: tuple[str, ...],
        body: Callable[[Unit], None],
    ) -> None:
        self.campaign = campaign
        self.name = name
        self.phase = phase
        self.operations = {op_id: campaign.operation(op_id) for op_id in operation_ids}
        self.body = body  # the phases this unit runs
        self.counting: PhaseCount | None = None  # the phase under way, counted for its progress
        self.case_fresh = Fresh(campaign.seed, f"{name}/cases")
        self.probe_fresh = Fresh(campaign.seed, f"{name}/probes")
        self.session: requests.Session | None = None
        self.history: list[str] = []  # curl commands that set the current case up, in order
        # Values the history's first lines keep in shell variables (name -> value of this run): the
        # reproducers quote the variable, e.g. the reference of the token they made (stateful.py).
        self.variables: dict[str, str] = {}
        self._stopped = False  # the partner stopped answering, or the user interrupted the campaign
        self.kind = ""  # the kind of the case sent last ("realistic", "positive", ..., a lifecycle's action)
        self.watch = WrongTargetWatch(campaign.target)

    @property
    def stopped(self) -> bool:
        """Whether the unit sends no more cases: the partner stopped answering, the user interrupted
        the campaign, or a bound (its deadline, its failures) ended it."""
        return self._stopped or self.campaign.collector.stopper.reached()

    @stopped.setter
    def stopped(self, value: bool) -> None:
        self._stopped = value

    def run(self) -> None:
        with open_session(self.campaign.target) as session:
            self.session = session
            try:
                self.body(self)
            except Exception as exc:
                # A Stop ends the Hypothesis test, which Hypothesis then reports as flaky (the next
                # call returns at once): once the partner stopped answering, that is expected.
                if not self.stopped:
                    raise
                if not _ends_a_stopped_unit(exc) and type(exc) not in _LOGGED:
                    _LOGGED.add(type(exc))
                    log.error("%s %s failed after it stopped", self.name, self.phase, exc_info=exc)
            finally:
                self.session = None

    def emit(self, event: Event) -> None:
        collector = self.campaign.collector
        collector.emit(event)
        counting = self.counting
        if counting is None:
            return
        if isinstance(event, CaseSent):
            counting.cases += 1
        elif isinstance(event, RequestSent):
            # Each answer is a sign of life: the console decides how often to show it.
            counting.requests += 1
            collector.progress(counting.progress())

    @contextmanager
    def phase_of(self, phase: str, planned: int, counted: str = "cases") -> Iterator[PhaseCount]:
        """Counts what `phase` sends, reporting its progress at its start, as each request is answered
        and at its end (also when it ends early)."""
        counting = self.counting = PhaseCount(self.name, phase, planned, counted)
        collector = self.campaign.collector
        collector.progress(counting.progress())
        # A request may wait for its answer as long as the time-out: the beat says the phase is alive.
        stop = threading.Event()
        beat = threading.Thread(
            target=_beat, args=(collector, counting, stop), name="mpesa-atm-progress", daemon=True
        )
        beat.start()
        try:
            yield counting
        finally:
            stop.set()
            beat.join()
            collector.progress(counting.progress(finished=True))
            self.counting = None

    # Sending ------------------------------------------------------------------------------------------

    def send(self, case: Case) -> Response:
        """Sends `case`; raises Stop, after recording it, when the partner does not answer."""
        assert self.session is not None
        timed = Timed(case.operation.label)
        try:
            response = send(self.campaign.target, self.session, case)
        except NoAnswer as exc:
            url = self.campaign.target.base_url + case.formatted_path
            self.emit(RequestSent(timed.unanswered(exc.request, url, exc.reason)))
            self.stopped = True
            self.emit(
                FindingFound(
                    Finding(
                        check="not_a_server_error",
                        operation=case.operation.label,
                        phase=self.phase,
                        title="The partner did not answer" + (" in time" if exc.timed_out else ""),
                        message=f"Received: no answer ({exc.reason})\n"
                        "Documented: " + documented("server_error", "a synchronous answer in the envelope"),
                        reproduce=(*self.history, self.reproduce(case)),
                        realism=_realism(case),
                    )
                )
            )
            raise Stop from None
        self.emit(RequestSent(timed.answered(response)))
        return response

    def control(self, path: str, body: dict[str, Any]) -> tuple[int, Any, str]:
        """POSTs to the mock's control API: (status, parsed body, curl command)."""
        assert self.session is not None
        answer = call_control(self.campaign.target, self.session, path, body)
        self.emit(RequestSent(answer.exchange))
        return answer.status, answer.body, answer.curl

    def reproduce(self, case: Case) -> str:
        return with_variables(reproduce(self.campaign.target, case), self.variables)

    def sent(self, kind: str, case: Case) -> None:
        self.kind = kind
        self.emit(CaseSent(SentCase(case.operation.label, self.phase, kind, _plain(case.body))))

    def try_case(self, kind: str, case: Case) -> None:
        """Sends a generated case and runs every check of the campaign on the answer, probes allowed."""
        self.sent(kind, case)
        response = self.send(case)
        self.watch.answered(case, response)
        with probing(self.probe(probes_enabled=True)):
            self.check(case, response, self.campaign.checks)

    # Checking -----------------------------------------------------------------------------------------

    def check(self, case: Case, response: Response, checks: Sequence[CheckInfo]) -> None:
        """Runs `checks` on the answer to `case` and records what failed, one cause one finding: the
        findings a failed check's FOLDED_UNDER names for the same answer are left out."""
        applied: list[str] = []
        failed: list[tuple[str, Failure]] = []
        # Each check keeps its own failure (_noting): none reaches schemathesis, which raises nothing.
        case.validate_response(response, checks=[_noting(info, applied, failed) for info in checks])
        folded = {name for check, _ in failed for name in FOLDED_UNDER.get(check, ()) if name != check}
        for check, failure in failed:
            if check not in folded:
                self._record(check, case, failure)
        # A valid case (collector.Door): the realistic phase's, or the stateful phase's, which are built
        # from the campaign's credentials and realistic values, as long as the schema accepts them.
        valid = (self.kind == "realistic" or self.phase == "stateful") and is_valid_request(case)
        self.emit(
            CaseChecked(
                case.operation.label,
                tuple(applied),
                status=response.status_code,
                code=response_code(response),
                description=_description(response),
                valid=valid,
            )
        )

    def _record(self, check: str, case: Case, failure: Failure) -> None:
        if isinstance(failure, ContractViolation):
            reproduce = failure.reproduce or (*self.history, self.reproduce(case))
            message = failure.message
            severity = failure.verdict
        else:
            reproduce = (*self.history, self.reproduce(case))
            message = failure.message or ""
            severity = FAILURE
        finding = Finding(
            check=check,
            operation=failure.operation or case.operation.label,
            phase=self.phase,
            title=failure.title,
            message=message,
            reproduce=reproduce,
            severity=severity,
            realism=_realism(case),
        )
        self.emit(FindingFound(finding))

    def probe(self, probes_enabled: bool) -> Probe:
        return Probe(
            credentials=self.campaign.target.credentials,
            send=self.send,
            fresh=self.probe_fresh,
            reproduce=self.reproduce,
            history=self.history,
            probes_enabled=probes_enabled,
        )

    # Generating ---------------------------------------------------------------------------------------

    def explore(self, strategy: st.SearchStrategy[T], examples: int, step: Callable[[T], None]) -> None:
        """Runs `step` on `examples` values Hypothesis draws from `strategy` with the campaign's seed,
        each with a history of its own; once the partner stopped answering, the rest do nothing."""

        @given(value=strategy)
        @_hypothesis_settings(examples)
        @hypothesis_seed(self.campaign.seed)
        def explore(value: T) -> None:
            if self.stopped:
                # Ends the Hypothesis test at once, rather than letting it draw the rest of its
                # examples for nothing (Unit.run expects the exception once the unit is stopped).
                raise Stop
            self.history.clear()
            step(value)

        explore()
