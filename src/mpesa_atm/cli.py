"""The `mpesa-atm` command: serve the mocks and hash bank passwords.

Start-up and usage errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpesa_atm import __version__
from mpesa_atm.contracts.command import register as register_verify
from mpesa_atm.errors import HarnessError, UsageError
from mpesa_atm.fuzz.command import register as register_fuzz
from mpesa_atm.listening import listen
from mpesa_atm.operations import CONTROL_PREFIX, ROLES, Role, operations_of
from mpesa_atm.passwords import hash_password
from mpesa_atm.proxy.command import register as register_proxy
from mpesa_atm.serve_store import check_fresh, kept_line, open_checked
from mpesa_atm.serve_tls import TLS_SETTINGS, add_tls_flags, check_tls, tls_options
from mpesa_atm.serve_tls import url as _url
from mpesa_atm.settings import (
    ENV_PREFIX,
    KEEP_ALIVE_SECONDS,
    Settings,
    add_flags,
    database_for_processes,
    database_label,
    flags_of,
    load_settings,
    variables_of,
)

if TYPE_CHECKING:  # the mocks are imported when a mock is served, not with the parser
    from mpesa_atm.mocks.records import Kept

__all__ = ["KEEP_ALIVE_SECONDS", "main"]

ROLE_NAMES: dict[Role, str] = {"ipg": "iPG mock", "bank": "bank mock"}
DEFAULT_PORTS: dict[Role, int] = {"ipg": 8001, "bank": 8002}
# The settings `serve` takes from flags (settings.py declares them), and its HTTPS ones (serve_tls.py):
# its role processes get their values from the variables of the same settings.
_SERVE_SETTINGS = (
    "bank_url",
    "ipg_url",
    "access_log",
    "retention",
    "db_path",
    "control_token",
    "control_token_file",
    "max_body_bytes",
)
# Library arguments whose flag is not their name with dashes (verify_provider's `paths`: --path).
_FLAGS = {"paths": "--path", "publish": "--publish-results"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that the workers uvicorn starts and the role processes inherit."""
    return listen(host, port, _url(host, port), inheritable=True)


def _die_with_parent() -> None:
    """In a role process of `serve`: be sent SIGTERM when the parent ends, however it ends (kill -9
    included), so that no mock is left holding its port."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _settings_for(args: argparse.Namespace) -> Settings:
    return load_settings(config_file=args.config, **flags_of(args))


def _validate(args: argparse.Namespace, settings: Settings, role: Role | None = None) -> Kept | None:
    """Refuses what cannot be served, in one line; with `role` (the process that serves it), what the
    store keeps of the role, after --fresh emptied it."""
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if settings.db_path == ":memory:" and args.workers > 1:
        raise UsageError("--db :memory: cannot be shared by several workers; give a file")
    if not _is_loopback(args.host) and not settings.control_token:
        raise UsageError(
            f"--host {args.host} is not loopback: give --control-token (or {ENV_PREFIX}CONTROL_TOKEN)"
            " so that strangers cannot reset or read the mock"
        )
    check_fresh(settings.db_path, fresh=args.fresh, yes=args.yes)
    kept = open_checked(settings.db_path, role, fresh=args.fresh) if settings.db_path != ":memory:" else None
    check_tls(settings)
    return kept


def _worker_env(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """What the uvicorn workers read their settings from (they build the app from the environment):
    the config file, and the settings `serve` takes from flags."""
    env = dict(os.environ)
    if args.config:
        env[ENV_PREFIX + "CONFIG"] = str(Path(args.config).resolve())
    env.update(variables_of(settings, _SERVE_SETTINGS + TLS_SETTINGS))
    return env


def _banner(role: Role, url: str, settings: Settings, workers: int, kept: Kept | None = None) -> str:
    paths = ", ".join(f"POST {settings.paths[op.id]}" for op in operations_of(role))
    other = (
        f"calls the bank at {settings.bank_url}" if role == "ipg" else f"calls the iPG at {settings.ipg_url}"
    )
    db = database_label(database_for_processes(settings.db_path))
    lines = [
        f"mpesa-atm {__version__}: {ROLE_NAMES[role]} on {url} ({paths})",
        f"  docs {url}/ui/  spec {url}/openapi.json  control {url}{CONTROL_PREFIX}/ui/",
        f"  store {db}, {workers} worker{'s' if workers > 1 else ''}; {other}",
    ]
    kept_from_before = kept_line(kept, url, settings.db_path)
    return "\n".join([*lines, kept_from_before] if kept_from_before else lines)


def _serve_one(args: argparse.Namespace, role: Role) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from mpesa_atm.mocks.connection_limits import BoundedHttp

    settings = _settings_for(args)
    kept = _validate(args, settings, role)
    if args.fd is not None:  # a role process of `serve`: its parent bound the socket
        sock = socket.socket(fileno=args.fd)
    else:
        sock = _listen(args.host, args.port if args.port is not None else DEFAULT_PORTS[role])
    port = sock.getsockname()[1]
    os.environ.update(_worker_env(args, settings))
    # In one write: both role processes share the output, and print() makes two when unbuffered.
    url = _url(args.host, port, tls=settings.tls_cert is not None)
    sys.stdout.write(_banner(role, url, settings, args.workers, kept) + "\n")
    sys.stdout.flush()
    config = uvicorn.Config(
        f"mpesa_atm.mocks:{role}_app",
        factory=True,
        host=args.host,
        port=port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.keep_alive,  # type: ignore[arg-type]
        # httptools' protocol (uvicorn[standard]) with the request head bounded in size and time, and
        # the worker's connections capped: uvicorn bounds none of them
        http=BoundedHttp,
        **tls_options(settings),
    )
    # What uvicorn.run does, on our socket.
    try:
        if args.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0


def _serve_both(args: argparse.Namespace) -> int:
    chosen = _settings_for(args)
    _validate(args, chosen)
    sockets: dict[Role, socket.socket] = {"ipg": _listen(args.host, args.ipg_port)}
    try:
        sockets["bank"] = _listen(args.host, args.bank_port)
    except UsageError:
        sockets["ipg"].close()
        raise
    ports = {role: sock.getsockname()[1] for role, sock in sockets.items()}  # port 0: the real ones
    # Wired to each other, unless a flag, a variable or the config file says where the other side is.
    tls = chosen.tls_cert is not None
    settings = chosen.replace(
        bank_url=_url(args.host, ports["bank"], tls) if chosen.bank_url == Settings.bank_url else None,
        ipg_url=_url(args.host, ports["ipg"], tls) if chosen.ipg_url == Settings.ipg_url else None,
    )
    common = ["--host", args.host, "--workers", str(args.workers)]
    if args.fresh:  # each role process empties its role before its workers start
        common += ["--fresh", "--yes"]
    children: list[subprocess.Popen[bytes]] = []
    for role, sock in sockets.items():
        fd = str(sock.fileno())
        command = [sys.executable, "-m", "mpesa_atm", "serve", role, "--fd", fd, *common]
        children.append(
            subprocess.Popen(
                command,
                env=_worker_env(args, settings),
                pass_fds=(sock.fileno(),),
                preexec_fn=_die_with_parent,
            )
        )
        sock.close()  # the child holds it now

    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while not any(child.poll() is not None for child in children):
            time.sleep(0.2)
    except KeyboardInterrupt:
        stopping = True
    # One mock stopped (or we were told to stop): stop the other too, and say how it went.
    codes = [child.poll() for child in children]
    stop()
    for child in children:
        child.wait()
    if stopping:
        return 0
    failed = next((code for code in codes if code), 0)  # a mock that died on its own
    return 1 if failed < 0 else failed


def _check_ports(args: argparse.Namespace) -> None:
    for flag in ("port", "ipg_port", "bank_port"):
        port = getattr(args, flag)
        if port is not None and not 0 <= port <= 65535:
            raise UsageError(f"--{flag.replace('_', '-')} {port}: a port is a number from 0 to 65535")
    if args.role is None and args.ipg_port == args.bank_port != 0:
        raise UsageError(f"--ipg-port and --bank-port are both {args.ipg_port}: give each mock its own")


def _serve(args: argparse.Namespace) -> int:
    _check_ports(args)
    if args.role is None:
        if args.port is not None:
            raise UsageError("--port needs a role: mpesa-atm serve ipg|bank --port N")
        return _serve_both(args)
    return _serve_one(args, args.role)


def _hash_password(args: argparse.Namespace) -> int:
    if not args.password_stdin and not sys.stdin.isatty():
        raise UsageError("no terminal to ask the password on: pipe it in with --password-stdin")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    if not password:
        raise UsageError("the password is empty")
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpesa-atm",
        description="Mocks, contract tests and fuzzing for the M-Pesa Generic ATM API.",
    )
    parser.add_argument("--version", action="version", version=f"mpesa-atm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the iPG and bank mocks (or one of them)",
        description="Run both mocks wired to each other (iPG on 8001, bank on 8002), or one role.",
    )
    serve.add_argument("role", nargs="?", choices=ROLES, help="run only this role")
    serve.add_argument("--port", type=int, help="with a role: the port (8001 for ipg, 8002 for bank)")
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a socket `serve` bound for a role
    serve.add_argument(
        "--ipg-port",
        type=int,
        default=DEFAULT_PORTS["ipg"],
        metavar="N",
        help=f"the iPG mock's port, both mocks served (default {DEFAULT_PORTS['ipg']}; 0: any free one)",
    )
    serve.add_argument(
        "--bank-port",
        type=int,
        default=DEFAULT_PORTS["bank"],
        metavar="N",
        help=f"the bank mock's port, both mocks served (default {DEFAULT_PORTS['bank']}; 0: any free one)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes per mock")
    serve.add_argument("--config", metavar="FILE", help="TOML config file (see docs/configuration.md)")
    serve.add_argument(
        "--fresh",
        action="store_true",
        help="start with an empty store: forget the tokens, transactions, fault rules, modes and journal"
        " of the mocks served (a PostgreSQL store, shared: with --yes)",
    )
    serve.add_argument(
        "--yes", action="store_true", help="with --fresh on a PostgreSQL store: empty it for every instance"
    )
    add_flags(serve, *_SERVE_SETTINGS)
    add_tls_flags(serve, "the mocks")
    serve.set_defaults(handler=_serve)

    hashing = commands.add_parser(
        "hash-password",
        help="print a scrypt hash of a bank password, for password_hash in the config file",
    )
    hashing.add_argument("--password-stdin", action="store_true", help="read it from standard input")
    hashing.set_defaults(handler=_hash_password)

    register_fuzz(commands)
    register_verify(commands)
    register_proxy(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "control_token", None):  # as --password's help says of it: a flag shows in ps
        instead = "--control-token-file FILE, " if hasattr(args, "control_token_file") else ""
        print(
            f"mpesa-atm: warning: --control-token shows in the process list; prefer {instead}"
            f"{ENV_PREFIX}CONTROL_TOKEN or control_token in the config file",
            file=sys.stderr,
        )
    try:
        code: int = args.handler(args)
    except UsageError as exc:  # a library's own word for an argument, spelled as our flag
        print(f"mpesa-atm: error: {exc.as_flag(_FLAGS)}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"mpesa-atm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before a command had anything to show (a campaign shows what ran)
        print("mpesa-atm: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
