"""`mpesa-atm proxy ipg|bank --upstream URL`: listens as the role, forwards each of its operations to
the upstream and judges every exchange by fuzz's rules, as it happens; on SIGINT or SIGTERM writes the
evidence (--report, --har, --junit-xml), prints the summary and exits with the verdict.

Exit 0 when nothing that went through broke the document (warnings allowed, unless --strict), 1 when
something did, 2 for a usage error (one line) or when nothing went through the proxy at all.

With `--workers N` uvicorn's supervisor runs N worker processes on the one listening socket, each
building the app from the same arguments (`_worker_app`); they judge and journal into the store, so
the judgement across exchanges and the views hold across them, and each hands its exchanges over to
this process in a file when it stops (proxy/evidence.py's HandOff), for the one evidence of the run.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from mpesa_atm.argtypes import path_mapping, positive_seconds, whole_number
from mpesa_atm.errors import ConfigError, UsageError
from mpesa_atm.listening import listen
from mpesa_atm.operations import CONTROL_PREFIX, ROLES, Role, operations, operations_of
from mpesa_atm.reporting.options import add_report_options
from mpesa_atm.reporting.outputs import BeforeLastLine, OutputFiles
from mpesa_atm.serve_tls import add_tls_flags, check_tls, tls_options, url
from mpesa_atm.settings import ENV_PREFIX, Settings, add_flags, flags_of, load_settings
from mpesa_atm.transport import Network, add_network_options

if TYPE_CHECKING:
    from mpesa_atm.fuzz.events import Listener
    from mpesa_atm.proxy.app import ProxyApp

__all__ = ["DEFAULT_PORT", "register"]

DEFAULT_PORT = 8010
_ROLE_NAMES = {"ipg": "the iPG", "bank": "the bank"}

_DESCRIPTION = (
    "Listen as the role (ipg: Token Redemption and Reversal; bank: Token Generation) and forward each "
    "of its operations to the partner at --upstream, answering the client with the partner's answer "
    "unchanged. Every exchange is judged by fuzz's checks, the client's request and the partner's "
    "answer, and across exchanges; one line per exchange on stdout, the header X-Mpesa-Atm-Violations "
    f"on an answer with a finding, GET {CONTROL_PREFIX}/journal and {CONTROL_PREFIX}/violations on the "
    "proxy. On SIGINT or SIGTERM the evidence is written and the summary printed. Exit 0: no failure "
    "(warnings allowed unless --strict); 1: a failure; 2: usage error, or nothing went through the proxy."
)


def register(commands: Any) -> None:
    """Adds the `proxy` subcommand to the `mpesa-atm` parser's subcommands."""
    proxy = commands.add_parser(
        "proxy",
        help="forward real traffic to a partner and judge every exchange by the document's rules",
        description=_DESCRIPTION,
    )
    proxy.add_argument("role", choices=ROLES, help="the side the upstream implements (the proxy plays it)")
    add_flags(proxy, "upstream")
    proxy.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    proxy.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free one)",
    )
    proxy.add_argument(
        "--path",
        action="append",
        type=path_mapping,
        default=[],
        metavar="OPERATION=PATH",
        help=f"the upstream's own path of an operation ({', '.join(operations())}), served there too",
    )
    proxy.add_argument(
        "--workers",
        type=whole_number(1),
        default=1,
        metavar="N",
        help="worker processes on the one port, judging across each other through the store (default 1)",
    )
    add_flags(proxy, "proxy_errors", "db_path")
    proxy.add_argument(
        "--strict", action="store_true", help="warnings (a partner laxer than the harness's formats) fail too"
    )
    proxy.add_argument(
        "--max-response-time",
        type=positive_seconds,
        metavar="S",
        help="an answer slower than S seconds fails the check response_time",
    )
    proxy.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds to wait for the upstream's answer (default: {ENV_PREFIX}CLIENT_TIMEOUT, else 10)",
    )
    proxy.add_argument("--junit-xml", metavar="FILE", help="on exit, also write the results as JUnit XML")
    add_report_options(
        proxy, "every check with its verdict and count, the findings with their exchanges as curl"
    )
    proxy.add_argument("--config", metavar="FILE", help="TOML config file (see docs/configuration.md)")
    add_flags(
        proxy,
        "bank_password",
        bank_password="a password to mask by value in the journal and the evidence, besides input_Password by"
        " "
        f"name and the config file's banks' (prefer {ENV_PREFIX}PASSWORD: a flag shows in the process list)",
    )
    add_tls_flags(proxy, "the proxy")
    add_network_options(proxy)
    proxy.set_defaults(handler=_proxy)


def _checked(args: argparse.Namespace) -> Settings:
    """The settings, with what cannot be served refused in one line."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: a port is a number from 0 to 65535")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {args.timeout:g}")
    settings = load_settings(config_file=args.config, **flags_of(args))
    if settings.upstream is None:
        raise UsageError(
            f"give the partner's base URL with --upstream URL (or {ENV_PREFIX}UPSTREAM, or upstream in the "
            "config file's [proxy])"
        )
    own = {op.id for op in operations_of(args.role)}
    unknown = sorted(set(dict(args.path)) - own)
    if unknown:
        raise UsageError(
            f"--path: no operation {', '.join(unknown)} on the {args.role} side"
            f" (it has {', '.join(sorted(own))})"
        )
    if args.workers > 1 and settings.db_path == ":memory:":
        raise UsageError("--db :memory: cannot be shared by several workers; give a file")
    paths = {**settings.paths, **dict(args.path)}
    try:
        return settings.replace(paths=paths)
    except ConfigError as exc:
        raise UsageError(f"--path: {exc}") from None


def _proxy(args: argparse.Namespace) -> int:
    settings = _checked(args)
    check_tls(settings)  # its own port's files, as serve's: one line before anything is made
    network = Network.from_args(args)
    outputs = OutputFiles.check(
        [("--report", args.report), ("--har", args.har), ("--junit-xml", args.junit_xml)]
    )
    from mpesa_atm.serve_store import open_checked

    open_checked(settings.db_path, None, fresh=False)  # its tables made, or one line saying why not
    if args.config:  # the connection limits read their settings from the environment, as serve's workers
        os.environ[ENV_PREFIX + "CONFIG"] = str(Path(args.config).resolve())
    sock = listen(args.host, args.port, f"{args.host}:{args.port}", inheritable=args.workers > 1)
    console = BeforeLastLine()
    try:
        return _serve(args, settings, network, sock, outputs, console)
    finally:
        sock.close()


def _options(args: argparse.Namespace, settings: Settings) -> tuple[tuple[str, str], ...]:
    return (
        ("errors", "on" if settings.proxy_errors else "off"),
        *((("strict", "on"),) if args.strict else ()),
        *((("workers", str(args.workers)),) if args.workers > 1 else ()),
    )


def _app(
    args: argparse.Namespace,
    settings: Settings,
    network: Network,
    listeners: list[Listener],
    hand_off: Path | None = None,
) -> ProxyApp:
    """The proxy's app as the arguments ask for it, with the ledger: this process's, or a worker's."""
    from mpesa_atm.proxy.factory import create_proxy
    from mpesa_atm.proxy.ledger import Ledger

    return create_proxy(
        args.role,
        settings,
        upstream=cast(str, settings.upstream),
        network=network,
        timeout=args.timeout,
        strict=args.strict,
        max_response_time=args.max_response_time,
        listeners=listeners,
        options=_options(args, settings),
        ledger_of=Ledger,
        out=_line,
        hand_off=hand_off,
        wires=bool(args.har),
    )


def _worker_app(arguments: dict[str, Any], folder: str) -> ProxyApp:
    """A worker's app (uvicorn's factory, in the worker process): built from the main process's
    arguments as it would build it, its run handing its exchanges over to `folder` when it stops."""
    args = argparse.Namespace(**arguments)
    settings = _checked(args)
    return _app(args, settings, Network.from_args(args), [], Path(folder) / f"worker-{os.getpid()}.pickle")


def _serve(
    args: argparse.Namespace,
    settings: Settings,
    network: Network,
    sock: socket.socket,
    outputs: OutputFiles,
    console: BeforeLastLine,
) -> int:
    import uvicorn

    from mpesa_atm import __version__
    from mpesa_atm.proxy.factory import run_of

    role: Role = args.role
    upstream_url = cast(str, settings.upstream)
    host, port = sock.getsockname()[:2]
    listening = url(host, port, tls=settings.tls_cert is not None)
    listeners = _listeners(args, console, listening)
    if args.workers == 1:
        app: Any = _app(args, settings, network, listeners)
        run = app.run
    else:  # the workers build theirs; this process's run takes their exchanges at the end
        folder = tempfile.mkdtemp(prefix="mpesa-atm-proxy-")
        app = functools.partial(_worker_app, _arguments(args), folder)
        run = run_of(
            role,
            settings,
            upstream_url,
            checks=(),
            strict=args.strict,
            max_response_time=args.max_response_time,
            listeners=listeners,
            options=_options(args, settings),
        )
    paths = ", ".join(f"POST {settings.paths[op.id]}" for op in operations_of(role))
    workers = f"; {args.workers} workers" if args.workers > 1 else ""
    _line(
        f"mpesa-atm {__version__}: proxy of {_ROLE_NAMES[role]} on {listening} ({paths}) -> {upstream_url}\n"
        f"  journal {listening}{CONTROL_PREFIX}/journal  violations {listening}{CONTROL_PREFIX}/violations; "
        f"--errors {'on' if settings.proxy_errors else 'off'}{workers}; stop with Ctrl-C (SIGINT) or "
        "SIGTERM for the verdict"
    )
    config = _config(settings, app, args.workers)
    if args.workers == 1:
        server = uvicorn.Server(config)
        # uvicorn raises the signal that stopped it again once it has shut down; a no-op handler of
        # ours takes it, so the evidence is written after a SIGTERM as after a Ctrl-C.
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, lambda *_: None)
        server.run(sockets=[sock])
        started = server.started
    else:
        try:
            started = _run_workers(config, sock, Path(folder), run)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if not started and args.workers == 1:
        raise ConfigError(
            "the proxy could not start: its store or the way to the upstream failed (see above)"
        )
    if not started:
        raise ConfigError(
            "no worker handed its exchanges over: none started (its store or the way to the upstream"
            " failed, see above), or each was stopped before it had"
        )
    try:
        result = run.finish()
    finally:
        console.release(outputs.written())
    sys.stdout.flush()
    return result.exit_code


def _config(settings: Settings, app: Any, workers: int) -> Any:
    """uvicorn's Config of the proxy: `app` itself, or with several `workers` the factory each calls."""
    import uvicorn

    from mpesa_atm.mocks.connection_limits import BoundedHttp

    return uvicorn.Config(
        app,
        factory=workers > 1,
        workers=workers,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.keep_alive,  # type: ignore[arg-type]
        http=BoundedHttp,
        server_header=False,  # the upstream's headers go through as they came
        date_header=False,
        **tls_options(settings),  # with --tls-client-ca, a client without a certificate is refused
    )


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments a worker builds its app from (pickled to it by uvicorn): all but the handler."""
    return {name: value for name, value in vars(args).items() if not callable(value)}


def _run_workers(config: Any, sock: socket.socket, folder: Path, run: Any) -> bool:
    """Runs the workers until SIGINT or SIGTERM (uvicorn's supervisor stops each with SIGTERM and
    waits for it: each hands its exchanges over as it stops), then gives them to `run`. False when
    no worker handed anything over: none started."""
    from uvicorn.supervisors import Multiprocess

    from mpesa_atm.proxy.evidence import HandOff

    Multiprocess(config, sockets=[sock]).run()
    handed = [HandOff.read(path) for path in sorted(folder.glob("worker-*.pickle"))]
    if not handed:
        return False
    if len(handed) < config.workers:
        run.note(
            f"{config.workers - len(handed)} of the {config.workers} workers handed no exchange over"
            " (stopped otherwise than by SIGINT or SIGTERM): what they saw is in the journal only"
        )
    run.take(handed)
    return True


def _line(text: str) -> None:
    """A line on stdout at once, also when stdout is a file or a pipe (the exchanges as they happen)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout gone: the traffic matters more than its line
        pass


def _listeners(args: argparse.Namespace, console: BeforeLastLine, listening: str) -> list[Listener]:
    """fuzz's reporters the options ask for, the console last (its closing block held, for the files
    written to be named before the summary line); the console is told of the end only."""
    from mpesa_atm.fuzz.events import CampaignFinished, Event
    from mpesa_atm.fuzz.report import ConsoleReporter, HarReporter, JUnitReporter
    from mpesa_atm.proxy.evidence import ProxyPage

    listeners: list[Listener] = []
    if args.junit_xml:
        listeners.append(JUnitReporter(args.junit_xml))
    if args.report:
        listeners.append(ProxyPage(args.report, listening))
    if args.har:
        listeners.append(HarReporter(args.har))
    reporter = ConsoleReporter(cast(TextIO, console), live=False)

    def at_the_end(event: Event) -> None:
        if isinstance(event, CampaignFinished):
            console.hold()
            reporter(event)

    listeners.append(at_the_end)
    return listeners
