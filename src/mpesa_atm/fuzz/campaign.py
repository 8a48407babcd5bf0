"""The campaign: checks its options, reaches the target, plans its units and runs them (in threads when
asked), emitting events all along. The CLI and the test suite share this code path.

Units per role: one per operation for the `fuzz` phase (edge cases, boundary values, then realistic,
schema-valid and schema-invalid cases), and, for an iPG, one `stateful` unit (a token nobody issued; then
token lifecycles, redeemed, reversed, replayed, of the tokens given or, against a mock with the control
API, of tokens it makes).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import schemathesis

from mpesa_atm.errors import ConfigError, TargetUnreachable
from mpesa_atm.fuzz import boundaries, edges, generated, realistic, stateful
from mpesa_atm.fuzz.bounds import Bounds, Stopper
from mpesa_atm.fuzz.cases import DEFAULT_CURRENCIES, Draft, Fresh
from mpesa_atm.fuzz.checks import CheckInfo
from mpesa_atm.fuzz.collector import Collector
from mpesa_atm.fuzz.events import (
    CampaignFinished,
    CampaignStarted,
    Event,
    Listener,
    Note,
    RequestSent,
    UnitProgress,
    Untested,
)
from mpesa_atm.fuzz.options import KINDS, PHASES, Kind, Options, checked, shown_options
from mpesa_atm.fuzz.probe_checks import AUTH_PROBING
from mpesa_atm.fuzz.results import CampaignResult
from mpesa_atm.fuzz.target import (
    NoAnswer,
    Target,
    Timed,
    check_control_token,
    control_available,
    open_session,
    response_code,
    send,
)
from mpesa_atm.fuzz.tokens import Token
from mpesa_atm.fuzz.unit import Campaign, Unit
from mpesa_atm.fuzz.wrong_target import check_answer
from mpesa_atm.operations import CONTROL_PREFIX, Role, operations_of
from mpesa_atm.spec import load_spec

__all__ = ["KINDS", "PHASES", "Kind", "role_schema", "run_campaign"]

# Half the cases are realistic: the semantic checks need valid requests; the rest are schemathesis's.
_WEIGHTS: dict[str, int] = {"realistic": 2, "positive": 1, "negative": 1}


def _budgets(kinds: Sequence[str], total: int) -> dict[str, int]:
    """How many of `total` cases each kind gets, by weight (largest remainder), in the order of KINDS."""
    weights = {kind: _WEIGHTS[kind] for kind in KINDS if kind in kinds}
    whole = sum(weights.values())
    shares = {kind: total * weight // whole for kind, weight in weights.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(weights, key=lambda kind: -(total * weights[kind] % whole))
    for kind in by_remainder[:left]:
        shares[kind] += 1
    return {kind: count for kind, count in shares.items() if count}


def _fuzz_operation(operation_id: str, kinds: tuple[Kind, ...], unit: Unit) -> None:
    """The fuzz phase of one operation: its edge cases and boundary values, then each kind's share of
    the examples."""
    edges.run(unit, operation_id)
    boundaries.run(unit, operation_id)
    for kind, examples in _budgets(kinds, unit.campaign.max_examples).items():
        if kind == "realistic":
            realistic.run(unit, operation_id, examples)
        else:
            generated.run(unit, operation_id, "positive" if kind == "positive" else "negative", examples)


def _schema(target: Target) -> schemathesis.BaseSchema:
    """The role's document, with each operation at the partner's path."""
    schema = role_schema(target.role, target.path)
    if target.app is not None:
        schema.app = target.app
    return schema


def role_schema(role: Role, path_of: Callable[[str], str]) -> schemathesis.BaseSchema:
    """The role's document as a schema, each operation at `path_of(its operationId)`: the one way the
    fuzzer, and the proxy that judges real traffic by the same checks, read it."""
    document = load_spec(f"{role}.yaml")
    paths: dict[str, Any] = {}
    for item in document["paths"].values():
        paths[path_of(item["post"]["operationId"])] = item
    document["paths"] = paths
    schema = schemathesis.openapi.from_dict(document)
    # Schemathesis would draw, now and then, the string literals of an in-process target's code
    # (the partner's, and whatever it imports: the harness's own, the tests'). A partner is judged
    # by the document over the wire, the same cases in process or not; and a literal such as the
    # test password, sent in another field, would leave the masking. Off.
    schema.config.analysis.constants.enabled = False
    return schema


def _check_credentials(campaign: Campaign) -> None:
    """One redemption of an unknown token first: refused credentials would make every finding moot."""
    target = campaign.target
    credentials = target.credentials
    assert credentials is not None
    draft = Draft("243843330333", "200", campaign.currencies[0], account_number=None, token="unknown")
    body = draft.body("token_redemption", Fresh(campaign.seed, "credentials"), credentials)
    case = campaign.operation("token_redemption").Case(body=body, media_type="application/json")
    timed = Timed(case.operation.label)
    with open_session(target) as session:
        try:
            response = send(target, session, case)
        except NoAnswer as exc:
            raise TargetUnreachable(f"cannot reach the ipg at {target.label}: {exc.reason}") from None
    campaign.collector.emit(RequestSent(timed.answered(response)))
    check_answer(target, case, response)
    code = response_code(response)
    if code == "-4":
        raise ConfigError(
            f"the iPG refused the credentials of {credentials.username!r} (-4 Authentication Failed): "
            "the username or password is not the one it knows the bank by"
        )
    if code == "-5":
        raise ConfigError(
            f"the iPG says shortcode {credentials.shortcode} is not linked to {credentials.username!r} "
            "(-5 Bank Details Invalid): the shortcode must be one linked to that username"
        )


def _progress_listener(progress: Callable[[UnitProgress], None]) -> Listener:
    def listener(event: Event) -> None:
        if isinstance(event, UnitProgress):
            progress(event)

    return listener


def _run_units(units: Sequence[Unit], workers: int) -> None:
    """Runs the units, `workers` at a time; on Ctrl-C every unit stops at its next case, the units
    under way are waited for (a request in flight ends within the time-out), and it is raised again."""
    try:
        if workers == 1:
            for unit in units:
                unit.run()
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpesa-atm-fuzz") as pool:
            futures = [pool.submit(unit.run) for unit in units]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:
                for unit in units:
                    unit.stopped = True
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except KeyboardInterrupt:
        for unit in units:
            unit.stopped = True
        raise


def run_campaign(
    target: Target,
    *,
    max_examples: int = 100,
    seed: int | None = None,
    workers: int = 1,
    checks: Sequence[str] | None = None,
    exclude_checks: Sequence[str] = (),
    strict: bool = False,
    require_exercised: bool = False,
    kinds: Sequence[Kind] = KINDS,
    phases: Sequence[str] = PHASES,
    currencies: Sequence[str] = DEFAULT_CURRENCIES,
    use_harness: bool = True,
    tokens: Sequence[Token] = (),
    auth_probes: int = 3,
    max_failures: int | None = None,
    max_time: float | None = None,
    max_response_time: float | None = None,
    progress: Callable[[UnitProgress], None] | None = None,
    listeners: Iterable[Listener] = (),
) -> CampaignResult:
    """Fuzz `target` and return what was found. Each event goes to every listener as it happens, and
    each UnitProgress also to `progress`. `checks` chooses the checks (None: all of the role's),
    `exclude_checks` leaves some out; with `strict`, warnings fail the campaign as failures do; with
    `require_exercised`, so does a check no case exercised.
    `tokens` (iPG) exist at the target: the stateful phase spends each on one lifecycle. At most
    `auth_probes` requests with a wrong password, and as many with another shortcode, go out.

    Bounds (None: none): after `max_failures` distinct failures (by check and operation; warnings too
    when `strict`), or `max_time` seconds after the call, every unit stops before its next case (a case
    under way ends first) and `result.stopped` says which bound; the checks not reached are not
    exercised. A campaign its deadline stopped before any check was exercised is untested (exit 2). With
    `max_response_time`, the check response_time fails an answer slower than that many seconds.

    Ctrl-C (KeyboardInterrupt) ends the campaign early: what ran is the result, marked interrupted, and
    CampaignFinished still goes out, so that the reports are written.

    A partner that let nothing through that the checks need (collector.Door: every valid case refused,
    or every request refused with HTTP 401/403) has not been tested: `result.untested` says what it
    answered instead and what to check, and the exit code is 2.

    Raises UsageError for options that do not fit, TargetUnreachable when the target cannot be reached,
    WrongTarget when what answers is not the role's API, ConfigError when an iPG refuses the target's
    credentials, ControlRefused (a ConfigError) when the mock's control API refuses the target's control
    token (or its lack of one).
    """
    options = Options(
        max_examples=max_examples,
        seed=random.SystemRandom().randrange(2**32) if seed is None else seed,
        workers=workers,
        asked_checks=None if checks is None else tuple(checks),
        excluded_checks=tuple(exclude_checks),
        strict=strict,
        require_exercised=require_exercised,
        kinds=tuple(kinds),
        phases=tuple(phases),
        currencies=tuple(currencies),
        use_harness=use_harness,
        tokens=tuple(tokens),
        auth_probes=auth_probes,
        bounds=Bounds(max_failures, max_time, max_response_time),
    )
    chosen = checked(target, options)
    started = time.perf_counter()
    collector = _start(
        target, options, chosen, [*listeners, *([_progress_listener(progress)] if progress else [])]
    )
    campaign = _reach(target, options, chosen, collector)
    units = _plan(campaign, options)
    _run(units, options.workers, collector)
    result = collector.result
    result.findings = collector.findings()
    result.duration = time.perf_counter() - started
    collector.emit(CampaignFinished(result))
    return result


def _start(
    target: Target, options: Options, checks: tuple[CheckInfo, ...], listeners: Sequence[Listener]
) -> Collector:
    """The result to come and its collector, which says the campaign started."""
    result = CampaignResult(
        role=target.role,
        target=target.label,
        seed=options.seed,
        max_examples=options.max_examples,
        checks=tuple(info.name for info in checks),
        operations=(),
        phases=tuple(phase for phase in PHASES if phase in options.phases),
        harness=False,
        strict=options.strict,
        needs={info.name: info.needs for info in checks},
        require_exercised=options.require_exercised,
        bounds=options.bounds,
    )
    # The deadline counts from here: the options are sound, nothing is sent yet.
    collector = Collector(result, listeners, Stopper(options.bounds))
    shown = shown_options(target, options)
    collector.emit(CampaignStarted(target.role, target.label, options.seed, options.max_examples, shown))
    return collector


def _reach(target: Target, options: Options, checks: tuple[CheckInfo, ...], collector: Collector) -> Campaign:
    """What the units share, once the target is known to answer: whether its control API is there
    (and takes the control token), and, for an iPG, that it takes the campaign's credentials."""
    result = collector.result
    result.harness = control_available(target) and options.use_harness
    if result.harness and target.role == "ipg":  # the iPG's phases make tokens with the control API
        check_control_token(target)
    campaign = Campaign(
        target,
        seed=options.seed,
        max_examples=options.max_examples,
        checks=checks,
        currencies=options.currencies,
        harness=result.harness,
        schema=_schema(target),
        collector=collector,
    )
    result.operations = tuple(campaign.operation(op.id).label for op in operations_of(target.role))
    if target.role == "ipg":
        _check_credentials(campaign)
    return campaign


def _plan(campaign: Campaign, options: Options) -> list[Unit]:
    """The units: one per operation for the fuzz phase, one for an iPG's stateful phase; with a note
    for what the campaign will not do."""
    target, collector = campaign.target, campaign.collector
    own = operations_of(target.role)
    units: list[Unit] = []
    if "fuzz" in options.phases:
        chosen_kinds = tuple(kind for kind in KINDS if kind in options.kinds)
        for op in own:
            body = functools.partial(_fuzz_operation, op.id, chosen_kinds)
            units.append(Unit(campaign, campaign.operation(op.id).label, "fuzz", (op.id,), body))
    if "stateful" in options.phases and target.role == "ipg":
        lifecycles = functools.partial(stateful.run, tokens=options.tokens)
        units.append(Unit(campaign, "token lifecycle", "stateful", tuple(op.id for op in own), lifecycles))
        if not campaign.harness and not options.tokens:
            collector.emit(
                Note(
                    f"stateful: no token lifecycles, the target has no {CONTROL_PREFIX} control API to make"
                    " tokens and no tokens were given (--tokens); valid redemptions of unknown tokens are"
                    " answered -9, which is legitimate"
                )
            )
    if target.role == "ipg" and options.auth_probes == 0 and AUTH_PROBING & set(collector.result.checks):
        collector.emit(Note("no wrong-password or other-shortcode probes: auth probes 0"))
    return units


def _run(units: Sequence[Unit], workers: int, collector: Collector) -> None:
    """Runs the units; Ctrl-C marks the result interrupted, a bound that ended it marks it stopped; a
    partner that let nothing through, or a deadline that came before any check was exercised, is said
    to be untested."""
    result, stopper = collector.result, collector.stopper
    try:
        _run_units(units, workers)
    except KeyboardInterrupt:
        result.interrupted = True
        collector.emit(Note("interrupted (Ctrl-C): the results are those of the cases sent until then"))
    if result.interrupted:
        return
    result.stopped = stopper.reason  # set only if a unit found a bound reached before a case of its own
    if stopper.by_deadline and not any(result.exercised.values()) and not collector.findings():
        collector.emit(Untested(f"the campaign stopped {stopper.reason} before any check was exercised"))
    reason = collector.untested()
    if reason is not None:
        collector.emit(Untested(reason))
