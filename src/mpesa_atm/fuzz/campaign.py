"""The campaign: generate cases from openapi/, send them to a partner (a URL or an ASGI app in process),
run every check on each answer, and collect findings. The CLI and the test suite share this code path.

Phases per role: `fuzz` (per operation: realistic valid requests, schemathesis's schema-valid and
schema-invalid ones) and, for an iPG that exposes the harness's control API, `stateful` (token
lifecycles: generated, redeemed, reversed, replayed).
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.python import asgi

from mpesa_atm.errors import ConfigError, TargetUnreachable, UsageError
from mpesa_atm.fuzz.cases import DEFAULT_CURRENCIES, Draft, Fresh, Lifecycle, drafts, lifecycles, other_amount
from mpesa_atm.fuzz.checks import (
    CheckInfo,
    ContractViolation,
    Credentials,
    Probe,
    checks_for,
    probing,
)
from mpesa_atm.fuzz.expectations import TokenState, advance, expect
from mpesa_atm.fuzz.report import curl_command
from mpesa_atm.operations import CONTROL_PREFIX, ROLES, Role, operations_of
from mpesa_atm.spec import OPERATION_PATHS, load_spec

__all__ = [
    "KINDS",
    "CampaignResult",
    "Finding",
    "Progress",
    "SentCase",
    "Target",
    "TargetUnreachable",
    "run_campaign",
]

Kind = Literal["realistic", "positive", "negative"]
KINDS: tuple[Kind, ...] = ("realistic", "positive", "negative")
PHASES = ("fuzz", "stateful")
OPERATIONS: dict[Role, tuple[str, ...]] = {role: tuple(op.id for op in operations_of(role)) for role in ROLES}
HARNESS = CONTROL_PREFIX
_ASGI_BASE = f"http://{asgi.HOST}"


@dataclass(frozen=True)
class Target:
    """The partner under test: its role, and a base URL or an ASGI app (in process)."""

    role: Role
    url: str | None = None
    app: Any = None
    paths: Mapping[str, str] = field(default_factory=dict)  # operationId -> the partner's path
    credentials: Credentials | None = None  # iPG targets: the bank's username, password and shortcode
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if (self.url is None) == (self.app is None):
            raise UsageError("give the target a URL or an app, not both nor neither")
        unknown = sorted(set(self.paths) - set(OPERATIONS[self.role]))
        if unknown:
            known = ", ".join(OPERATIONS[self.role])
            raise UsageError(f"no operation {', '.join(unknown)} on the {self.role} side (it has {known})")
        for operation, path in self.paths.items():
            if not path.startswith("/"):
                raise UsageError(f"the path of {operation} must start with '/', not {path!r}")
        paths = [self.path(operation) for operation in OPERATIONS[self.role]]
        if len(set(paths)) < len(paths):
            raise UsageError(f"two operations at the same path: {', '.join(paths)}")
        if self.role == "ipg" and self.credentials is None:
            raise UsageError("an iPG target needs the bank's credentials (username, password, shortcode)")

    @property
    def base_url(self) -> str:
        return (self.url or _ASGI_BASE).rstrip("/")

    @property
    def label(self) -> str:
        return self.url or "the app in process"

    def path(self, operation_id: str) -> str:
        return self.paths.get(operation_id, OPERATION_PATHS[operation_id])


@dataclass(frozen=True)
class Finding:
    """A check that failed: where, what was received against what is documented, and how to replay it."""

    check: str
    operation: str
    phase: str
    title: str
    message: str
    reproduce: tuple[str, ...]
    occurrences: int = 1


@dataclass(frozen=True)
class SentCase:
    """A generated case as sent (probes and replays a check sends are not listed)."""

    operation: str
    phase: str
    kind: str
    body: Any


@dataclass(frozen=True)
class Progress:
    """How far one unit (an operation's fuzzing, or the token lifecycles) has got."""

    unit: str  # e.g. "POST /token-redemption fuzz"
    done: int
    total: int
    findings: int


@dataclass
class CampaignResult:
    """What a campaign did and found; `exit_code` is the command's."""

    role: Role
    target: str
    seed: int
    max_examples: int
    checks: tuple[str, ...]
    operations: tuple[str, ...]  # labels, e.g. "POST /token-generation" (the partner's paths)
    phases: tuple[str, ...]
    harness: bool
    cases: int = 0
    requests: int = 0
    duration: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    sent: list[SentCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.findings else 0


class _Stop(Exception):
    """The partner stopped answering during a unit: recorded as a finding, the unit ends."""


@dataclass
class _Collector:
    """Findings and counters shared by the campaign's worker threads."""

    result: CampaignResult
    progress: Callable[[Progress], None] | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_key: dict[tuple[str, str], Finding] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        with self.lock:
            key = (finding.check, finding.operation)
            first = self.by_key.get(key)
            if first is None:
                self.by_key[key] = finding
            else:
                self.by_key[key] = dataclasses.replace(first, occurrences=first.occurrences + 1)

    def sent(self, case: SentCase) -> None:
        with self.lock:
            self.result.cases += 1
            self.result.sent.append(case)

    def request(self) -> None:
        with self.lock:
            self.result.requests += 1

    def report(self, unit: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        with self.lock:
            count = len(self.by_key)
            self.progress(Progress(unit, done, total, count))


def _schema(target: Target) -> schemathesis.BaseSchema:
    """The role's document, with each operation at the partner's path."""
    document = load_spec(f"{target.role}.yaml")
    paths: dict[str, Any] = {}
    for item in document["paths"].values():
        paths[target.path(item["post"]["operationId"])] = item
    document["paths"] = paths
    schema = schemathesis.openapi.from_dict(document)
    if target.app is not None:
        schema.app = target.app
    return schema


@contextmanager
def _session(target: Target) -> Iterator[requests.Session]:
    if target.app is not None:
        with asgi.get_client(target.app) as client:
            yield client
    else:
        with requests.Session() as session:
            yield session


def _harness_available(target: Target) -> bool:
    """Whether the target is an mpesa-atm mock of its role (it has /_harness); raises when unreachable."""
    with _session(target) as session:
        url = f"{target.base_url}{HARNESS}/health"
        try:
            response = session.get(url, timeout=target.timeout)
        except requests.RequestException as exc:
            reason = _reason(exc)
            raise TargetUnreachable(f"cannot reach the {target.role} at {target.label}: {reason}") from None
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 200 and isinstance(body, dict) and body.get("role") == target.role


_REASONS = {
    "Connection refused": "connection refused",
    "Connection reset by peer": "connection reset by peer",
    "RemoteDisconnected": "the connection was closed without an answer",
    "Name or service not known": "name or service not known",
    "No route to host": "no route to host",
    "timed out": "timed out",
}


def _reason(exc: BaseException) -> str:
    """What went wrong on the wire, in a few words (requests nests the cause in its message)."""
    text = str(exc)
    for marker, reason in _REASONS.items():
        if marker in text:
            return reason
    return type(exc).__name__ + (f": {text[:200]}" if text else "")


class _Unit:
    """One operation's fuzz phase, or the stateful run: runs in one thread with its own session."""

    def __init__(
        self,
        campaign: _Campaign,
        name: str,
        phase: str,
        operation_ids: tuple[str, ...],
    ) -> None:
        self.campaign = campaign
        self.name = name
        self.phase = phase
        self.operations = {op_id: campaign.operation(op_id) for op_id in operation_ids}
        self.done = 0
        self.case_fresh = Fresh(campaign.seed, f"{name}/cases")
        self.probe_fresh = Fresh(campaign.seed, f"{name}/probes")
        self.session: requests.Session | None = None
        self.history: list[str] = []
        self.stopped = False

    # Sending ------------------------------------------------------------------------------------------

    def send(self, case: Case) -> Response:
        assert self.session is not None
        target = self.campaign.target
        self.campaign.collector.request()
        try:
            if target.app is not None:
                return case.call(session=self.session)
            # Not case.call(): its transport sends a request again on a fresh connection when a reused
            # one drops it, which would hide a partner that resets connections mid-call.
            kwargs = case.as_transport_kwargs(base_url=target.base_url)
            kwargs.pop("timeout", None)
            answer = self.session.request(**kwargs, timeout=target.timeout, allow_redirects=False)
            return Response.from_any(answer)
        except requests.RequestException as exc:
            self._record_stop(case, exc)
            raise _Stop from None

    def _record_stop(self, case: Case, exc: BaseException) -> None:
        self.stopped = True
        timed_out = isinstance(exc, requests.Timeout)
        self.campaign.collector.add(
            Finding(
                check="not_a_server_error",
                operation=case.operation.label,
                phase=self.phase,
                title="The partner did not answer" + (" in time" if timed_out else ""),
                message=f"Received: no answer ({_reason(exc)})\n"
                "Documented: a synchronous answer in the envelope",
                reproduce=(*self.history, self.reproduce(case)),
            )
        )

    def harness(self, path: str, body: Mapping[str, Any]) -> tuple[int, Any, str]:
        """POST to the mock's control API: (status, parsed body, curl command)."""
        assert self.session is not None
        target = self.campaign.target
        url = f"{target.base_url}{HARNESS}{path}"
        self.campaign.collector.request()
        try:
            response = self.session.post(url, json=dict(body), timeout=target.timeout)
        except requests.RequestException as exc:
            raise TargetUnreachable(f"{url} stopped answering: {_reason(exc)}") from None
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        return response.status_code, parsed, curl_command(url, dict(body))

    def reproduce(self, case: Case) -> str:
        credentials = self.campaign.target.credentials
        return curl_command(
            self.campaign.target.base_url + case.formatted_path,
            case.body,
            media_type=case.media_type or "application/json",
            secret=credentials.password if credentials else None,
        )

    # Checking -----------------------------------------------------------------------------------------

    def check(self, case: Case, response: Response, checks: Sequence[CheckInfo]) -> None:
        for info in checks:
            try:
                case.validate_response(response, checks=[info.function])
            except FailureGroup as group:
                for failure in group.exceptions:
                    self._record(info.name, case, failure)

    def _record(self, check: str, case: Case, failure: Failure) -> None:
        if isinstance(failure, ContractViolation):
            reproduce = failure.reproduce or (*self.history, self.reproduce(case))
            message = failure.message
        else:
            reproduce = (*self.history, self.reproduce(case))
            message = failure.message or ""
        self.campaign.collector.add(
            Finding(
                check=check,
                operation=failure.operation or case.operation.label,
                phase=self.phase,
                title=failure.title,
                message=message,
                reproduce=reproduce,
            )
        )

    def probe(self, probes_enabled: bool) -> Probe:
        return Probe(
            credentials=self.campaign.target.credentials,
            send=self.send,
            fresh=self.probe_fresh,
            reproduce=self.reproduce,
            history=self.history,
            probes_enabled=probes_enabled,
        )

    # Running ------------------------------------------------------------------------------------------

    def run(self) -> None:
        with _session(self.campaign.target) as session:
            self.session = session
            try:
                if self.phase == "fuzz":
                    self._fuzz()
                else:
                    self._stateful()
            except Exception:
                # A _Stop ends the Hypothesis test, which Hypothesis then reports as flaky (the next
                # call returns at once): once the partner stopped answering, that is expected.
                if not self.stopped:
                    raise
            finally:
                self.session = None

    def _settings(self, examples: int) -> settings:
        return settings(
            max_examples=examples,
            phases=[Phase.explicit, Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=False,
        )

    def _tick(self, total: int) -> None:
        self.done += 1
        if self.done == total or self.done % max(1, total // 4) == 0:
            self.campaign.collector.report(f"{self.name} {self.phase}", self.done, total)

    def _fuzz(self) -> None:
        campaign = self.campaign
        ((operation_id, operation),) = self.operations.items()
        self._edges(operation_id, operation)
        for kind, examples in _budgets(campaign.kinds, campaign.max_examples).items():
            if kind == "realistic":
                strategy: st.SearchStrategy[Any] = drafts(campaign.currencies)
            else:
                mode = GenerationMode.POSITIVE if kind == "positive" else GenerationMode.NEGATIVE
                strategy = operation.as_strategy(generation_mode=mode)
            self._fuzz_kind(operation_id, operation, kind, strategy, examples)

    def _fuzz_kind(
        self, operation_id: str, operation: Any, kind: str, strategy: st.SearchStrategy[Any], examples: int
    ) -> None:
        campaign = self.campaign

        @given(value=strategy)
        @self._settings(examples)
        @hypothesis_seed(campaign.seed)
        def fuzz(value: Any) -> None:
            if self.stopped:
                return
            self.history.clear()
            case = self._realistic(operation_id, operation, value) if kind == "realistic" else value
            campaign.collector.sent(SentCase(operation.label, "fuzz", kind, _plain(case.body)))
            with probing(self.probe(probes_enabled=True)):
                response = self.send(case)
                self.check(case, response, campaign.checks)
            self._tick(campaign.max_examples)

        fuzz()

    def _edges(self, operation_id: str, operation: Any) -> None:
        """Refusals the document implies, once each: no fields, not an object, not JSON, not sent as
        application/json; and a valid request with a newline after a field (the pattern's `$` of a
        validator that also matches before a final newline lets it through)."""
        credentials = self.campaign.target.credentials
        valid = Draft("243843330333", "200", self.campaign.currencies[0], None, "exists")
        as_text = json.dumps(valid.body(operation_id, self.case_fresh, credentials))
        edges: list[tuple[Any, str, str | None]] = [
            ({}, "application/json", None),
            ([], "application/json", None),
            (b"{not json", "application/json", None),
            (as_text, "text/plain", None),
            (None, "application/json", "input_CustomerMSISDN"),
            (None, "application/json", "input_Amount"),
        ]
        with probing(self.probe(probes_enabled=True)):
            for body, media_type, newline_after in edges:
                if self.stopped:
                    return
                self.history.clear()
                if newline_after is None:
                    case: Case = operation.Case(body=body, media_type=media_type)
                else:
                    case = self._realistic(operation_id, operation, valid, newline_after=newline_after)
                self.campaign.collector.sent(SentCase(operation.label, "fuzz", "edge", _plain(case.body)))
                self.check(case, self.send(case), self.campaign.checks)

    def _realistic(
        self, operation_id: str, operation: Any, draft: Draft, newline_after: str | None = None
    ) -> Case:
        credentials = self.campaign.target.credentials
        body = draft.body(operation_id, self.case_fresh, credentials)
        if operation_id != "token_generation" and self.campaign.harness and draft.token != "unknown":
            amount = body["input_Amount"] if draft.token == "exists" else other_amount(body["input_Amount"])
            token = {
                "bank_transaction_ref": body["input_BankTransactionRef"],
                "transaction_id": body.get("input_TransactionID") or self.case_fresh("input_TransactionID"),
                "msisdn": body["input_CustomerMSISDN"],
                "amount": amount,
                "currency": body["input_Currency"],
            }
            if credentials is not None:
                token["username"] = credentials.username
            status, _, curl = self.harness("/tokens", token)
            if status == 201:  # a 409 (already there) or 400 (unknown bank) leaves the token unknown
                self.history.append(curl)
        if newline_after is not None:
            body[newline_after] += "\n"
        case: Case = operation.Case(body=body, media_type="application/json")
        return case

    # The stateful run ---------------------------------------------------------------------------------

    def _stateful(self) -> None:
        campaign = self.campaign
        total = campaign.max_examples
        checks = tuple(info for info in campaign.checks if info.name not in _PROBING_CHECKS)

        @given(life=lifecycles(campaign.currencies))
        @self._settings(total)
        @hypothesis_seed(campaign.seed)
        def stateful(life: Lifecycle) -> None:
            if self.stopped:
                return
            self.history.clear()
            with probing(self.probe(probes_enabled=False)) as probe:
                self._lifecycle(life, probe, checks)
            self._tick(total)

        stateful()

    def _make_token(self, life: Lifecycle) -> tuple[str, str] | None:
        """A token for `life`: generated through the bank when the iPG mock can reach one, else seeded."""
        credentials = self.campaign.target.credentials
        username = {"username": credentials.username} if credentials else {}
        details = {"msisdn": life.msisdn, "amount": life.amount, "currency": life.currency}
        if self.campaign.withdrawals is not False:
            status, body, curl = self.harness("/withdrawals", {**details, **username})
            if status == 201 and isinstance(body, dict):
                self.campaign.withdrawals = True
                self.history.append(curl)
                return str(body["bank_transaction_ref"]), str(body["transaction_id"])
            if self.campaign.withdrawals is None:
                self.campaign.withdrawals = False
                self.campaign.note(
                    "stateful: the iPG mock could not have a bank generate tokens "
                    f"(/_harness/withdrawals answered {status}); tokens were seeded with /_harness/tokens"
                )
        reference = self.case_fresh("input_BankTransactionRef")
        transaction_id = self.case_fresh("input_TransactionID")
        token = {"bank_transaction_ref": reference, "transaction_id": transaction_id, **details, **username}
        status, _, curl = self.harness("/tokens", token)
        if status != 201:
            return None
        self.history.append(curl)
        return reference, transaction_id

    def _lifecycle(self, life: Lifecycle, probe: Probe, checks: Sequence[CheckInfo]) -> None:
        credentials = self.campaign.target.credentials
        assert credentials is not None
        made = self._make_token(life)
        if made is None:
            return
        reference, transaction_id = made
        redemption, reversal = (self.operations[op] for op in ("token_redemption", "token_reversal"))
        base = {
            "input_Username": credentials.username,
            "input_Password": credentials.password,
            "input_CustomerMSISDN": life.msisdn,
            "input_Currency": life.currency,
            "input_BankShortcode": credentials.shortcode,
            "input_Amount": life.amount,
            "input_BankTransactionRef": reference,
        }
        state = TokenState()
        last: tuple[Case, dict[str, str]] | None = None  # the last request that was not a replay
        for action in life.actions:
            fresh_reference = {"input_ThirdPartyReference": self.case_fresh("input_ThirdPartyReference")}
            if action == "replay":
                if last is None:
                    continue
                previous, body = last
                case = previous.operation.Case(body=dict(body), media_type="application/json")
            elif action == "reverse":
                body = {**base, **fresh_reference, "input_TransactionID": transaction_id}
                case = reversal.Case(body=body, media_type="application/json")
            else:
                amount = life.amount if action == "redeem" else other_amount(life.amount)
                body = {**base, **fresh_reference, "input_Amount": amount}
                case = redemption.Case(body=body, media_type="application/json")
            probe.expectation = expect(action, state)
            self.campaign.collector.sent(
                SentCase(case.operation.label, "stateful", action, _plain(case.body))
            )
            response = self.send(case)
            self.check(case, response, checks)
            state = advance(state, action, _code(response))
            self.history.append(self.reproduce(case))
            if action != "replay":
                last = (case, body)
        probe.expectation = None


_PROBING_CHECKS = {"wrong_password_rejected", "other_shortcode_rejected", "optional_field_left_out"}

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


def _code(response: Response) -> str | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    code = body.get("output_ResponseCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _plain(body: Any) -> Any:
    """A body as it can be compared between runs (NOT_SET for no body)."""
    if isinstance(body, (dict, list, str, bytes, int, float, bool)) or body is None:
        return body
    return repr(body)


class _Campaign:
    def __init__(
        self,
        target: Target,
        *,
        seed: int,
        max_examples: int,
        kinds: tuple[Kind, ...],
        checks: tuple[CheckInfo, ...],
        currencies: tuple[str, ...],
        harness: bool,
        collector: _Collector,
    ) -> None:
        self.target = target
        self.seed = seed
        self.max_examples = max_examples
        self.kinds = kinds
        self.checks = checks
        self.currencies = currencies
        self.harness = harness
        self.collector = collector
        self.schema = _schema(target)
        self.withdrawals: bool | None = None  # whether /_harness/withdrawals works; None: not tried yet

    def operation(self, operation_id: str) -> Any:
        return self.schema[self.target.path(operation_id)]["POST"]

    def note(self, text: str) -> None:
        with self.collector.lock:
            self.collector.result.notes.append(text)


def _check_credentials(campaign: _Campaign) -> None:
    """One redemption of an unknown token first: refused credentials would make every finding moot."""
    credentials = campaign.target.credentials
    assert credentials is not None
    fresh = Fresh(campaign.seed, "credentials")
    draft = Draft(
        msisdn="243843330333",
        amount="200",
        currency=campaign.currencies[0],
        account_number=None,
        token="unknown",
    )
    operation = campaign.operation("token_redemption")
    case = operation.Case(
        body=draft.body("token_redemption", fresh, credentials), media_type="application/json"
    )
    with _session(campaign.target) as session:
        try:
            if campaign.target.app is not None:
                response = case.call(session=session)
            else:
                response = case.call(
                    base_url=campaign.target.base_url, session=session, timeout=campaign.target.timeout
                )
        except requests.RequestException as exc:
            raise TargetUnreachable(
                f"cannot reach the ipg at {campaign.target.label}: {_reason(exc)}"
            ) from None
    campaign.collector.request()
    code = _code(response)
    if code == "-4":
        raise ConfigError(
            f"the iPG refused the credentials of {credentials.username!r} (-4 Authentication Failed): "
            "give the right --username and --password (or MPESA_ATM_USERNAME, MPESA_ATM_PASSWORD)"
        )
    if code == "-5":
        raise ConfigError(
            f"the iPG says shortcode {credentials.shortcode} is not linked to {credentials.username!r} "
            "(-5 Bank Details Invalid): give the right --shortcode (or MPESA_ATM_SHORTCODE)"
        )


def run_campaign(
    target: Target,
    *,
    max_examples: int = 100,
    seed: int | None = None,
    workers: int = 1,
    checks: Sequence[str] | None = None,
    kinds: Sequence[Kind] = KINDS,
    phases: Sequence[str] = PHASES,
    currencies: Sequence[str] = DEFAULT_CURRENCIES,
    use_harness: bool = True,
    progress: Callable[[Progress], None] | None = None,
) -> CampaignResult:
    """Fuzz `target` and return what was found. Raises TargetUnreachable when it cannot be reached."""
    if max_examples < 1:
        raise UsageError("max_examples must be at least 1")
    if workers < 1:
        raise UsageError("workers must be at least 1")
    unknown_kinds = sorted(set(kinds) - set(KINDS))
    unknown_phases = sorted(set(phases) - set(PHASES))
    if unknown_kinds or unknown_phases or not kinds:
        raise UsageError(f"unknown kinds {unknown_kinds} or phases {unknown_phases}")
    try:
        chosen = checks_for(target.role, tuple(checks) if checks is not None else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    allowed = set(load_spec("common.yaml")["components"]["schemas"]["Currency"]["enum"])
    if not currencies or set(currencies) - allowed:
        raise UsageError(
            f"currencies must be ISO 4217 codes of the document, not {sorted(set(currencies) - allowed)}"
        )
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    started = time.perf_counter()
    harness = _harness_available(target) and use_harness
    result = CampaignResult(
        role=target.role,
        target=target.label,
        seed=seed,
        max_examples=max_examples,
        checks=tuple(info.name for info in chosen),
        operations=(),
        phases=tuple(phase for phase in PHASES if phase in phases),
        harness=harness,
    )
    collector = _Collector(result, progress)
    campaign = _Campaign(
        target,
        seed=seed,
        max_examples=max_examples,
        kinds=tuple(kind for kind in KINDS if kind in kinds),
        checks=chosen,
        currencies=tuple(currencies),
        harness=harness,
        collector=collector,
    )
    result.operations = tuple(campaign.operation(op).label for op in OPERATIONS[target.role])
    if target.role == "ipg":
        _check_credentials(campaign)
    units: list[_Unit] = []
    if "fuzz" in phases:
        for operation_id in OPERATIONS[target.role]:
            label = campaign.operation(operation_id).label
            units.append(_Unit(campaign, label, "fuzz", (operation_id,)))
    if "stateful" in phases and target.role == "ipg":
        if harness:
            units.append(_Unit(campaign, "token lifecycle", "stateful", OPERATIONS["ipg"]))
        else:
            result.phases = tuple(phase for phase in result.phases if phase != "stateful")
            result.notes.append(
                "stateful: skipped, the target has no /_harness control API to make tokens; valid "
                "redemptions of unknown tokens are answered -9, which is legitimate"
            )
    if workers == 1:
        for unit in units:
            unit.run()
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mpesa-atm-fuzz") as pool:
            for future in [pool.submit(unit.run) for unit in units]:
                future.result()
    result.findings = sorted(collector.by_key.values(), key=lambda f: (f.operation, f.check))
    result.duration = time.perf_counter() - started
    return result
