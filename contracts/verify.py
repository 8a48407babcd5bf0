"""The provider side: replays the contracts against a running provider with Pact's verifier and
reports each interaction, with the mismatches themselves when one fails (`report.py`); provider-state
changes go through a relay that keeps the provider's reasons (`relay.py`), and the verifier's requests
through a loopback proxy that speaks TLS to the provider as the network says (`recorder.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import logging
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mpesa_atm.contracts.generate import pact_dir
from mpesa_atm.contracts.pacticipants import PROVIDER_NAMES
from mpesa_atm.contracts.recorder import RecordingProxy, Timeline, exchanges_of
from mpesa_atm.contracts.relay import StateRelay
from mpesa_atm.contracts.report import NOT_RUN, InteractionOutcome, Report, StateFailure, outcomes
from mpesa_atm.errors import ProviderUnreachable, UsageError, VerificationError
from mpesa_atm.operations import CONTROL_PREFIX, Role, operations_of
from mpesa_atm.reachable import url_problem, wait_until_listening
from mpesa_atm.spec import OPERATION_PATHS
from mpesa_atm.transport import Network, refused_outside_envelope

if TYPE_CHECKING:
    from pact import Verifier

__all__ = [
    "STATES_PATH",
    "Broker",
    "InteractionOutcome",
    "ProviderUnreachable",
    "Publication",
    "Report",
    "StateFailure",
    "VerificationError",
    "verify_provider",
]

# Where the mocks serve provider states; the default --provider-states-url is BASE + this.
STATES_PATH = f"{CONTROL_PREFIX}/provider-states"


@dataclass(frozen=True)
class Broker:
    """A Pact Broker to read the pacts from: a token, or a username and password, or neither."""

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Publication:
    """Publish the results to the broker as this version (and branch) of the provider."""

    provider_version: str
    branch: str | None = None
    build_url: str | None = None


def _check_url(argument: str, url: str) -> str:
    problem = url_problem(url)
    if problem is not None:
        raise UsageError(problem, argument=argument)
    return url.rstrip("/")


def _check_reachable(what: str, url: str, timeout: float, wait: float) -> None:
    """A TCP connection, no request: a state endpoint must not be called outside a verification."""
    try:
        wait_until_listening(url, wait=wait, timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ProviderUnreachable(f"cannot reach {what} at {url}: {reason}") from None


def _read_pact(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable pact file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("provider"), dict):
        raise UsageError(f"{path} is not a pact file (it names no provider)")
    return data


def _local_pacts(source: Path, provider: str) -> list[Path]:
    """The pact files at `source` (a file or a folder of them) whose provider is `provider`."""
    if source.is_dir():
        candidates = sorted(source.glob("*.json"))
    elif source.is_file():
        candidates = [source]
    else:
        raise UsageError(f"{source}: no such file or directory", argument="pacts")
    found = {path: _read_pact(path)["provider"].get("name") for path in candidates}
    chosen = [path for path, name in found.items() if name == provider]
    if not chosen:
        others = ", ".join(sorted({str(name) for name in found.values()})) or "no pact files"
        raise UsageError(f"{source}: no pact has provider {provider!r} (found: {others})", argument="pacts")
    return chosen


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ErrorLog(logging.Handler):
    """Keeps the errors Pact's core logs while it verifies: some (publishing the results) it reports
    nowhere else."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(_ANSI.sub("", record.getMessage()))

    @contextlib.contextmanager
    def attached(self, logger: logging.Logger) -> Iterator[_ErrorLog]:
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


class _Silence:
    kept = False  # set when a verifier run is abandoned (Ctrl-C): its report must not come out later


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[_Silence]:
    """Pact's core prints its own report on file descriptor 1; ours replaces it. What we print
    meanwhile (each interaction as it is verified) goes where file descriptor 1 went. When a run is
    abandoned, the command's sys.stdout keeps writing there and descriptor 1 stays silenced until
    the process ends, moments later."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    original = sys.stdout
    ours = None
    if _fileno(original) == 1:
        ours = open(saved, "w", encoding=original.encoding, buffering=1, closefd=False)  # noqa: SIM115
        sys.stdout = ours
    silence = _Silence()
    try:
        os.dup2(devnull, 1)
        yield silence
    finally:
        if ours is not None:
            ours.flush()
        if not (silence.kept and ours is not None):
            sys.stdout = original
            os.dup2(saved, 1)
            os.close(saved)
        os.close(devnull)


def _fileno(stream: object) -> int | None:
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _renamed_paths(role: Role, paths: Mapping[str, str]) -> dict[str, str]:
    """The contracts' path -> the provider's, for the operations given another path."""
    operations = tuple(op.id for op in operations_of(role))
    renames = {}
    for operation, path in paths.items():
        if operation not in operations:
            raise UsageError(f"{operation}: the {role} serves {', '.join(operations)}", argument="paths")
        if not path.startswith("/"):
            raise UsageError(f"{operation}={path}: a path starts with /", argument="paths")
        if path != OPERATION_PATHS[operation]:
            renames[OPERATION_PATHS[operation]] = path
    return renames


def _with_paths(files: list[Path], renames: dict[str, str], folder: Path) -> list[Path]:
    """Copies of the pact files, in `folder`, whose requests go to the provider's paths."""
    copies = []
    for path in files:
        pact = _read_pact(path)
        for interaction in pact.get("interactions", []):
            request = interaction.get("request")
            if isinstance(request, dict) and request.get("path") in renames:
                request["path"] = renames[request["path"]]
        copy = folder / path.name
        copy.write_text(json.dumps(pact, indent=2), encoding="utf-8")
        copies.append(copy)
    return copies


def verify_provider(
    role: str,
    url: str,
    *,
    pacts: Path | str | None = None,
    paths: Mapping[str, str] | None = None,
    provider_states_url: str | None = None,
    broker: Broker | None = None,
    publish: Publication | None = None,
    control_token: str | None = None,
    timeout: float = 10.0,
    wait: float = 0.0,
    record: bool = False,
    network: Network | None = None,
    strict: bool = False,
    on_start: Callable[[Report], None] | None = None,
    on_outcome: Callable[[InteractionOutcome], None] | None = None,
) -> Report:
    """Replays the contracts whose provider is `role` ("ipg" or "bank") against the provider at `url`.

    The pacts are `pacts` (a file or folder), the broker's, or, when neither is given, the contracts
    shipped with the harness; `paths` maps an operation (e.g. "token_generation") to the provider's
    own path. A provider that refuses connections is tried again for `wait` seconds (it may be
    starting). With `record`, the requests go through a recording proxy and the report keeps each
    exchange (for `--report` and `--har`). `network` says how to reach the provider and its states
    endpoint (TLS, a client certificate, headers for every request). Each mismatch is judged by the
    rules `fuzz` judges by (`mpesa_atm.judgement`): an interaction whose mismatches are all warnings
    (the document is silent) passes with warnings, and fails the report only with `strict`. Raises UsageError,
    ProviderUnreachable (nothing answered, TLS failed, or every request was refused 401/403 outside the
    API's envelope) or VerificationError when no verification could be made; a mismatch is in the
    report, not raised. `on_start` is given the report before the first interaction, `on_outcome`
    each interaction's outcome as soon as it is known. Ctrl-C (KeyboardInterrupt) ends the
    verification there: the report has what was verified, the rest "not run", and says interrupted.
    """
    network = network or Network()
    if role not in PROVIDER_NAMES:
        raise UsageError(f"no provider role {role!r}: use one of {', '.join(PROVIDER_NAMES)}")
    provider = PROVIDER_NAMES[role]
    base = _check_url("url", url)
    states_url = _check_url("provider_states_url", provider_states_url or base + STATES_PATH)
    if timeout <= 0:
        raise UsageError("must be more than 0 seconds", argument="timeout")
    if wait < 0:
        raise UsageError("must be 0 seconds or more", argument="wait")
    renames = _renamed_paths(role, paths or {})
    if publish is not None and broker is None:
        raise UsageError("publishes to a Pact Broker: give a broker", argument="publish")
    if broker is not None:
        _check_url("broker_url", broker.url)
        if broker.token and (broker.username or broker.password):
            raise UsageError("give a broker token or a broker username and password, not both")
        if bool(broker.username) != bool(broker.password):
            raise UsageError("a broker username needs its password, and a password its username")
        if renames:
            raise UsageError("rewrites local pact files: it cannot change the broker's", argument="paths")
    local = _local_pacts(Path(pacts) if pacts else pact_dir(), provider) if pacts or not broker else []
    _check_reachable("the provider", base, timeout, wait)
    _check_reachable("the provider-states endpoint", states_url, timeout, wait)

    sources = [str(path) for path in local] + ([f"Pact Broker {broker.url}"] if broker else [])
    if renames:
        sources = [
            f"{source} (requests to {', '.join(f'{old} sent to {new}' for old, new in renames.items())})"
            for source in sources
        ]
    report = Report(provider, base, sources, states_url, role=role, started=datetime.now(UTC), strict=strict)
    report.options = [("timeout", f"{timeout:g} s")] + [
        ("path", f"{old} sent to {new}") for old, new in renames.items()
    ]
    if publish is not None:
        report.options.append(("results published as", publish.provider_version))
    contracts = {
        (str(pact.get("consumer", {}).get("name")), str(interaction.get("description"))): interaction
        for pact in (_read_pact(path) for path in local)
        for interaction in pact.get("interactions", [])
    }
    # The code each interaction expects, to judge its mismatches: a broker's pact not at hand is
    # judged by the shipped contract of the same consumer and description, if there is one.
    judged_by = {**_shipped_contracts(provider), **contracts}
    clock = time.perf_counter()
    if on_start is not None:
        on_start(report)
    with contextlib.ExitStack() as stack:
        if renames:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mpesa-atm-pacts-")))
            local = _with_paths(local, renames, folder)
        timeline = Timeline()
        shown = on_outcome or (lambda outcome: None)
        _run(report, local, broker, publish, control_token, timeout, timeline, network, judged_by, shown)
    report.duration = time.perf_counter() - clock
    report.interactions = [
        dataclasses.replace(outcome, contract=contracts.get((outcome.consumer, outcome.description)))
        for outcome in report.interactions
    ]
    if record:
        _pair(report, timeline, renames)
    return report


def _shipped_contracts(provider: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The interactions of the contracts shipped with the harness whose provider is `provider`."""
    try:
        files = _local_pacts(pact_dir(), provider)
    except UsageError:
        return {}
    return {
        (str(pact.get("consumer", {}).get("name")), str(interaction.get("description"))): interaction
        for pact in (_read_pact(path) for path in files)
        for interaction in pact.get("interactions", [])
    }


def _pair(report: Report, timeline: Timeline, renames: dict[str, str]) -> None:
    """Gives each interaction verified the exchange the recorder saw for it."""
    report.exchanges = timeline.exchanges
    ran = [outcome for outcome in report.interactions if outcome.status != "not run"]
    keys = []
    for outcome in ran:
        path = str(((outcome.contract or {}).get("request") or {}).get("path", ""))
        keys.append((outcome.states, renames.get(path, path)))
    paired = {
        id(outcome): dataclasses.replace(outcome, exchange=exchange)
        for outcome, exchange in zip(ran, exchanges_of(keys, timeline.items), strict=True)
    }
    report.interactions = [paired.get(id(outcome), outcome) for outcome in report.interactions]


def _run(
    report: Report,
    local: list[Path],
    broker: Broker | None,
    publish: Publication | None,
    control_token: str | None,
    timeout: float,
    timeline: Timeline,
    network: Network,
    contracts: dict[tuple[str, str], dict[str, Any]],
    on_outcome: Callable[[InteractionOutcome], None],
) -> None:
    """Runs Pact's verifier, its requests through the proxy, and fills the report from its results,
    each interaction's outcome handed to `on_outcome` as soon as it is known. A local pact is verified
    one interaction at a time (Pact reports only at the end of a run), a broker's in one run (its
    results are published for the whole). The verifier runs in a thread of its own: Ctrl-C reaches
    this one, which stops there with what was verified (the interrupted interaction is abandoned)."""
    os.environ["PACT_DO_NOT_TRACK"] = "true"  # before Pact's core is loaded
    proxy = RecordingProxy(report.url, timeline, timeout, network)
    headers = {"Authorization": f"Bearer {control_token}"} if control_token else {}
    errors = _ErrorLog()
    runs = [_Run(source=broker)] if broker is not None else []
    # One run per description: Pact filters by description, so a repeated one runs once for both.
    runs += [_Run(source=path, only=key) for path in local for key in dict.fromkeys(_interactions_of(path))]
    results: dict[str, list[Any]] = {"errors": [], "notices": []}
    with (
        StateRelay(report.states_url, headers, timeout, timeline, network) as relay,
        errors.attached(logging.getLogger("pact")),
        proxy,
        _stdout_silenced() as silence,
    ):
        configure = functools.partial(_verifier, report, proxy, relay, publish, network, timeout)
        worker = _Verifying(runs, configure, relay)
        try:
            for run, found, failures in worker.results():
                for key in ("errors", "notices"):
                    results[key] += found.get(key, [])
                report.pact_output += run.output
                for outcome in outcomes(found, failures, contracts):
                    report.interactions.append(outcome)
                    on_outcome(outcome)
        except KeyboardInterrupt:
            worker.stop()
            report.interrupted = silence.kept = True
    if publish is not None:
        # Pact's core logs a failed publication and carries on: the one place it is said.
        report.publish_errors = [m for m in errors.messages if "publish" in m.lower()]
    report.state_failures = relay.failures
    report.notices = [str(n.get("text", n)) for n in results["notices"] if isinstance(n, dict)]
    if report.interrupted:
        done = {(outcome.consumer, outcome.description) for outcome in report.interactions}
        report.interactions += [_not_run(*run.only) for run in runs if run.only and run.only not in done]
        return
    if not any(outcome.status in ("verified", "warning") for outcome in report.interactions):
        _not_tested(report, relay, timeline, network)
    if not report.interactions:
        _nothing_verified(report, results["errors"])


def _nothing_verified(report: Report, errors: list[Any]) -> None:
    """Raises VerificationError with the reasons Pact gave for verifying nothing."""
    reasons = "; ".join(
        _ANSI.sub("", str((e.get("mismatch") or {}).get("message") or e.get("interaction") or e))
        for e in errors
    )
    raise VerificationError(
        f"no interaction of {report.provider} was verified" + (f": {reasons}" if reasons else "")
    )


def _not_run(consumer: str, description: str) -> InteractionOutcome:
    return InteractionOutcome(consumer, description, (), "not run", (NOT_RUN,))


def _interactions_of(path: Path) -> list[tuple[str, str]]:
    """(consumer, description) of each interaction of a pact file, in the file's order."""
    pact = _read_pact(path)
    consumer = str(pact.get("consumer", {}).get("name"))
    return [(consumer, str(i.get("description"))) for i in pact.get("interactions", [])]


@dataclass
class _Run:
    """One run of Pact's verifier: a pact file's one interaction, or a broker's pacts."""

    source: Path | Broker
    only: tuple[str, str] | None = None  # (consumer, description)
    output: str = ""  # the verifier's own report


def _verifier(
    report: Report,
    proxy: RecordingProxy,
    relay: StateRelay,
    publish: Publication | None,
    network: Network,
    timeout: float,
    run: _Run,
) -> Verifier:
    """Pact's verifier for one run, its requests through the proxy, its state changes through the relay."""
    from pact import Verifier

    verifier = Verifier(report.provider, host="127.0.0.1")
    verifier.add_transport(url=f"http://127.0.0.1:{proxy.port}{urlsplit(report.url).path}")
    # A second more than the proxy gives the provider: the proxy's own answer comes first.
    verifier.set_request_timeout(int(timeout * 1000) + 1000)
    verifier.set_coloured_output(enabled=False)
    if network.headers:
        verifier.add_custom_headers(network.headers)
    if isinstance(run.source, Broker):
        _broker_source(verifier, run.source)
        if publish is not None:
            verifier.set_publish_options(
                publish.provider_version, url=publish.build_url, branch=publish.branch
            )
    else:
        verifier.add_source(run.source)
    if run.only is not None:
        verifier.filter(f"^{re.escape(run.only[1])}$")
    verifier.state_handler(relay.url, teardown=True, body=True)
    return verifier


def _broker_source(verifier: Verifier, broker: Broker) -> None:
    if broker.token:
        verifier.broker_source(broker.url, token=broker.token, use_env=False)
    elif broker.username and broker.password:
        verifier.broker_source(broker.url, username=broker.username, password=broker.password, use_env=False)
    else:
        verifier.broker_source(broker.url, use_env=False)


class _Verifying:
    """The runs, one after another, in a daemon thread: Pact's core holds a run until it ends and its
    callbacks swallow KeyboardInterrupt, so the main thread waits here, where Ctrl-C reaches it."""

    def __init__(self, runs: list[_Run], configure: Callable[[_Run], Verifier], relay: StateRelay) -> None:
        self._runs = runs
        self._configure = configure
        self._relay = relay
        self._done: queue.Queue[tuple[_Run, dict[str, Any], list[StateFailure]] | None] = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._verify, name="pact verifier", daemon=True)

    def results(self) -> Iterator[tuple[_Run, dict[str, Any], list[StateFailure]]]:
        """Each run's results and the state changes refused during it, as each run ends."""
        self._thread.start()
        while True:
            try:
                # A wait with a time-out: Ctrl-C is seen within it on every platform.
                item = self._done.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            yield item

    def stop(self) -> None:
        """No further run starts; the one under way is left to end with the process."""
        self._stopped.set()

    def _verify(self) -> None:
        try:
            for run in self._runs:
                if self._stopped.is_set():
                    break
                refused = len(self._relay.failures)
                verifier = self._configure(run)
                # A failure raises a bare RuntimeError ("failed to execute"): what failed is in the results.
                with contextlib.suppress(RuntimeError):
                    verifier.verify()
                run.output = verifier.output(strip_ansi=True)
                self._done.put((run, verifier.results, self._relay.failures[refused:]))
        finally:
            self._done.put(None)


def _tls_said(text: str) -> str | None:
    """The TLS failure the relay or the proxy worded (transport.tls_problem), if `text` has one."""
    _, found, said = text.partition("TLS: ")
    return found + said if found else None


def _not_tested(report: Report, relay: StateRelay, timeline: Timeline, network: Network) -> None:
    """Nothing was verified: raises ProviderUnreachable when that is because TLS failed, no request
    was answered, or every request was refused 401/403 outside the API's envelope (a gateway, or a
    control API that wants its token), rather than because the provider broke the contracts."""
    for failure in report.state_failures:
        if failure.status is None and (tls := _tls_said(failure.detail)):
            raise ProviderUnreachable(f"cannot reach the provider-states endpoint {report.states_url}: {tls}")
    exchanges = timeline.exchanges
    for exchange in exchanges:
        if exchange.status is None and (tls := _tls_said(exchange.reason)):
            raise ProviderUnreachable(f"cannot reach the provider at {report.url}: {tls}")
    answers = [(status, body, "a provider-state change") for status, body in relay.answers]
    answers += [(e.status, e.response_body, e.label) for e in exchanges if e.status is not None]
    unanswered = [f.detail for f in report.state_failures if f.status is None]
    unanswered += [f"{e.label}: {e.reason}" for e in exchanges if e.status is None]
    if not answers and unanswered:
        raise ProviderUnreachable(
            f"the provider at {report.url} answered no request ({unanswered[0]})"
            + network.closed_hint(report.url)
        )
    if not answers or not all(refused_outside_envelope(status, body) for status, body, _ in answers):
        return
    status, body, what = answers[0]
    refusal = next((f for f in report.state_failures if f.status == status), None)
    said = refusal.detail.split(" ", 2)[-1] if refusal else " ".join(body.decode(errors="replace").split())
    hint = " (or the control token with --control-token)" if relay.answers else ""
    raise ProviderUnreachable(
        f"the provider at {report.url} refused every request with HTTP {status} outside the API's "
        f"envelope (first, {what}: {said[:160]}): give what its gateway wants with -H 'Name: value'{hint}"
    )
