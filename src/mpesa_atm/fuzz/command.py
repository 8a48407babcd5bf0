"""`mpesa-atm fuzz ipg|bank --url BASE`: a campaign against a partner's running implementation, with the
console and JUnit reporters; it words the library's errors in terms of its flags.

Exit 0 when nothing breaks the document (warnings allowed, unless --strict; checks not exercised
allowed, unless --require-exercised), 1 when something does, 2 for a usage error or a target that cannot
be tested (one line), or a partner that let nothing through (the summary line says what it answered
instead), 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpesa_atm.argtypes import path_mapping, whole_number
from mpesa_atm.errors import ConfigError, UsageError, WrongTarget
from mpesa_atm.operations import CONTROL_PREFIX, ROLES, operations
from mpesa_atm.reporting.options import add_report_options
from mpesa_atm.settings import ENV_PREFIX, add_flags, flags_of, load_settings
from mpesa_atm.transport import Network, add_network_options

__all__ = ["hypothesis_home", "register", "rerun_command"]

# run_campaign's and Target's arguments whose flag is not their name with dashes.
_FLAGS = {
    "currencies": "--currency",
    "checks": "--check",
    "exclude_checks": "--exclude-check",
    "paths": "--path",
}
# What each role's campaign tests, for the error that says the target is not that.
_TESTS = {
    "bank": "`fuzz bank` tests a bank's Token Generation",
    "ipg": "`fuzz ipg` tests an iPG's Token Redemption and Reversal",
}
# Where the bank's credentials come from, for an error about them.
_CREDENTIALS_FROM = (
    f"give the bank's credentials with --username, --password and --shortcode, or {ENV_PREFIX}USERNAME, "
    f"{ENV_PREFIX}PASSWORD and {ENV_PREFIX}SHORTCODE, or the config file's [bank]"
)
# Where the control token comes from, for an error about it.
_CONTROL_TOKEN_FROM = (
    f"give the token the mock was served with: --control-token TOKEN, or {ENV_PREFIX}CONTROL_TOKEN, or the "
    "config file's control_token (or --no-harness to leave the control API alone)"
)

_positive = whole_number(1)
_seed = whole_number(0)
# The defaults of the options that have one, which the command that runs a campaign again leaves out.
_DEFAULTS: dict[str, object] = {"max_examples": 100, "workers": 1, "wait": 10.0, "auth_probes": 3}
# The options of a campaign as that command writes them, after the role, --url and --seed, in the order
# of --help: (flag, dest). The network's come after them, as the reproducers write them. Left out: the
# files a campaign writes (--junit-xml, --report, --har: running it again does not overwrite the page
# it is read on), and --password and --control-token, which it reads from MPESA_ATM_PASSWORD and
# MPESA_ATM_CONTROL_TOKEN instead.
_RERUN_OPTIONS = (
    ("--path", "path"),
    ("--max-examples", "max_examples"),
    ("--workers", "workers"),
    ("--timeout", "timeout"),
    ("--wait", "wait"),
    ("--currency", "currency"),
    ("--check", "check"),
    ("--exclude-check", "exclude_check"),
    ("--strict", "strict"),
    ("--require-exercised", "require_exercised"),
    ("--config", "config"),
    ("--no-harness", "no_harness"),
    ("--username", "bank_username"),
    ("--shortcode", "bank_shortcode"),
    ("--other-shortcode", "other_shortcode"),
    ("--tokens", "tokens"),
    ("--auth-probes", "auth_probes"),
)
_FILES = frozenset({"config", "tokens"})  # read again from wherever the command is run


def register(commands: Any) -> None:
    """Adds the `fuzz` subcommand to the `mpesa-atm` parser's subcommands."""
    fuzz = commands.add_parser(
        "fuzz",
        help="fuzz a partner's Token Generation (bank) or Token Redemption/Reversal (iPG) endpoints",
        description=(
            "Run a property-based campaign from the OpenAPI documents against a partner at URL and check "
            "every answer against the document's rules. A failure breaks the document; a warning is a "
            "partner laxer than the harness's own choices, which the document leaves open. A check no case "
            "exercised is listed as not exercised, with what it needs. Exit 0: no failure (warnings and "
            "checks not exercised allowed unless --strict, --require-exercised); 1: a failure; 2: usage "
            "error, a target that cannot be reached, or a partner that let nothing through (every valid "
            "case refused: the summary says what it answered); 130: interrupted."
        ),
    )
    fuzz.add_argument("role", choices=ROLES, help="the side the partner implements")
    fuzz.add_argument(
        "--url", required=True, metavar="BASE", help="the partner's base URL (paths are appended)"
    )
    fuzz.add_argument(
        "--path",
        action="append",
        type=path_mapping,
        default=[],
        metavar="OPERATION=PATH",
        help=f"the partner's own path of an operation ({', '.join(operations())})",
    )
    fuzz.add_argument(
        "--max-examples",
        type=_positive,
        default=_DEFAULTS["max_examples"],
        metavar="N",
        help="cases per operation (100)",
    )
    fuzz.add_argument(
        "--seed", type=_seed, metavar="N", help="same seed, same cases (default: random, printed)"
    )
    fuzz.add_argument(
        "--workers",
        type=_positive,
        default=_DEFAULTS["workers"],
        metavar="N",
        help="operations fuzzed at once (1)",
    )
    fuzz.add_argument("--junit-xml", metavar="FILE", help="also write the results as JUnit XML")
    add_report_options(fuzz, "every check with its section and verdict, the findings and charts")
    fuzz.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds to wait for an answer (default: {ENV_PREFIX}CLIENT_TIMEOUT, else 10)",
    )
    fuzz.add_argument(
        "--wait",
        type=float,
        default=_DEFAULTS["wait"],
        metavar="S",
        help="wait this long for a partner that refuses connections while it starts (10)",
    )
    fuzz.add_argument(
        "--currency",
        action="append",
        metavar="CODE",
        help="currency of the realistic cases; repeat for several (default: CDF and USD, the document's)",
    )
    fuzz.add_argument("--check", action="append", metavar="NAME", help="run only this check; repeatable")
    fuzz.add_argument(
        "--exclude-check",
        action="append",
        default=[],
        metavar="NAME",
        help="do not run this check; repeatable",
    )
    fuzz.add_argument(
        "--strict",
        action="store_true",
        help="warnings (a partner laxer than the harness's formats, statuses, Content-Type) fail too",
    )
    fuzz.add_argument(
        "--require-exercised",
        action="store_true",
        help="a check no case exercised fails the campaign too (exit 1, naming it): e.g. token_lifecycle "
        "without --tokens nor a mock's control API",
    )
    fuzz.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file: the bank's credentials ([bank]), control_token and client_timeout (default: "
        f"{ENV_PREFIX}CONFIG; see docs/configuration.md)",
    )
    fuzz.add_argument(
        "--no-harness",
        action="store_true",
        help=f"do not use the mock's {CONTROL_PREFIX} control API even if the target has one",
    )
    add_flags(
        fuzz,
        "control_token",
        control_token=f"sent as 'Authorization: Bearer TOKEN' on the calls to a mock's {CONTROL_PREFIX} "
        f"control API only, for a mock served with one (default: {ENV_PREFIX}CONTROL_TOKEN, or control_token "
        "of the config file; prefer those: a flag shows in the process list)",
    )
    credentials = fuzz.add_argument_group(
        "iPG targets",
        f"the bank's credentials at the iPG (also {ENV_PREFIX}USERNAME, ...PASSWORD, ...SHORTCODE, "
        "or the config file's [bank])",
    )
    add_flags(credentials, "bank_username", "bank_password", "bank_shortcode")
    credentials.add_argument(
        "--other-shortcode", metavar="CODE", help="a shortcode NOT linked to the username (default: derived)"
    )
    credentials.add_argument(
        "--tokens",
        metavar="FILE",
        help="a CSV of tokens that exist at the iPG (header bank_transaction_ref,transaction_id,msisdn,"
        "amount,currency, optionally issued_at: ISO 8601 with a zone), each spent on one token lifecycle",
    )
    credentials.add_argument(
        "--auth-probes",
        type=whole_number(0),
        default=_DEFAULTS["auth_probes"],
        metavar="N",
        help="send at most N requests with a wrong password, and N with another shortcode (3; 0: none), "
        "as an iPG locks an account after a few failed logins",
    )
    add_network_options(fuzz)
    fuzz.set_defaults(handler=_fuzz)


def hypothesis_home(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where `mpesa-atm fuzz` has Hypothesis keep its files: the user's cache folder
    ($XDG_CACHE_HOME/mpesa-atm/hypothesis, else ~/.cache/mpesa-atm/hypothesis); None when
    HYPOTHESIS_STORAGE_DIRECTORY says where (the user's choice, which Hypothesis follows)."""
    if env.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return None
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # a relative one is invalid (XDG Base Directory) and ignored
        return Path(xdg) / "mpesa-atm" / "hypothesis"
    try:
        return Path.home() / ".cache" / "mpesa-atm" / "hypothesis"
    except RuntimeError:  # no home folder: Hypothesis's own default, rather than no campaign
        return None


def rerun_command(args: argparse.Namespace, network: Network, seed: int) -> str:
    """The command line that runs the campaign of `args` again with `seed`, for a shell: the options
    given (files by absolute path) and never a secret. A password given with --password is left for
    MPESA_ATM_PASSWORD to give, a secret header's value for a shell variable named after it (as the
    reproducers do); a comment at the end names the variables to set. The environment's MPESA_ATM_*
    variables are read again as they are where it runs."""
    words = ["mpesa-atm", "fuzz", args.role, "--url", args.url, "--seed", str(seed)]
    for flag, dest in _RERUN_OPTIONS:
        value = getattr(args, dest)
        if value is None or value is False or value == [] or value == _DEFAULTS.get(dest):
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list):  # repeated: --path's OPERATION=PATH, or names
            for item in value:
                words += [flag, "=".join(item) if isinstance(item, tuple) else str(item)]
        else:
            words += [flag, os.path.abspath(value) if dest in _FILES else str(value)]
    command = " ".join([shlex.join(words), *network.curl_options()])
    needed = network.secret_variables()
    if getattr(args, "control_token", None) is not None:
        needed.insert(0, ENV_PREFIX + "CONTROL_TOKEN")
    if args.bank_password is not None:
        needed.insert(0, ENV_PREFIX + "PASSWORD")
    return command + (f"  # set first: {', '.join(needed)}" if needed else "")


def _fuzz(args: argparse.Namespace) -> int:
    from hypothesis.configuration import set_hypothesis_home_dir

    from mpesa_atm.fuzz.campaign import run_campaign
    from mpesa_atm.fuzz.cases import DEFAULT_CURRENCIES
    from mpesa_atm.fuzz.checks import Credentials
    from mpesa_atm.fuzz.events import Listener
    from mpesa_atm.fuzz.page import HtmlReporter
    from mpesa_atm.fuzz.report import ConsoleReporter, HarReporter, JUnitReporter
    from mpesa_atm.fuzz.target import ControlRefused, Target
    from mpesa_atm.fuzz.tokens import read_tokens

    settings = load_settings(config_file=args.config, **flags_of(args))
    credentials = None
    if args.role == "ipg":
        if not settings.bank_shortcode.isdigit():
            raise UsageError(f"--shortcode must be digits, not {settings.bank_shortcode!r}")
        credentials = Credentials(
            username=settings.bank_username,
            password=settings.bank_password,
            shortcode=settings.bank_shortcode,
            other_shortcode=args.other_shortcode,
        )
    # Hypothesis keeps caches (the constants it read in the source, a Unicode table) in ./.hypothesis
    # unless told otherwise, and a command should leave nothing where it is run: they go to the user's
    # cache folder, as the command owns its process. The campaign keeps no example database at all
    # (unit.py: the printed seed is how to run it again). The library leaves Hypothesis's home alone:
    # a test suite that calls run_campaign keeps its own tests' examples where its Hypothesis does.
    home = hypothesis_home()
    if home is not None:
        set_hypothesis_home_dir(home)
    network = Network.from_args(args)  # a file it cannot use: its own one line, not the credentials'
    # The files are written before the summary line, so that they are there when it is printed.
    listeners: list[Listener] = []
    if args.junit_xml:
        listeners.append(JUnitReporter(args.junit_xml))
    if args.report:
        listeners.append(HtmlReporter(args.report, rerun=functools.partial(rerun_command, args, network)))
    if args.har:
        listeners.append(HarReporter(args.har))
    listeners.append(ConsoleReporter())
    try:
        target = Target(
            role=args.role,
            url=args.url,
            paths=dict(args.path),
            credentials=credentials,
            timeout=args.timeout if args.timeout is not None else settings.client_timeout,
            wait=args.wait,
            network=network,
            control_token=settings.control_token,
        )
        result = run_campaign(
            target,
            max_examples=args.max_examples,
            seed=args.seed,
            workers=args.workers,
            checks=args.check,
            exclude_checks=args.exclude_check,
            strict=args.strict,
            require_exercised=args.require_exercised,
            currencies=tuple(args.currency or DEFAULT_CURRENCIES),
            use_harness=not args.no_harness,
            tokens=read_tokens(args.tokens) if args.tokens else (),
            auth_probes=args.auth_probes,
            listeners=listeners,
        )
    except UsageError as exc:
        raise UsageError(exc.as_flag(_FLAGS)) from None
    except ControlRefused as exc:
        raise ConfigError(f"{exc}; {_CONTROL_TOKEN_FROM}") from None
    except ConfigError as exc:  # run_campaign's other one: the iPG refused the credentials
        raise ConfigError(f"{exc}; {_CREDENTIALS_FROM}") from None
    except WrongTarget as exc:
        if "gateway" in exc.answered:  # a 401 or 403 outside the envelope: in front of the API
            raise WrongTarget(
                f"{exc}; are credentials or a gateway header missing? Give what it wants with -H 'Name: "
                "value' (or --cert and --key), or check --url",
                operation_id=exc.operation_id,
                answered=exc.answered,
            ) from None
        raise WrongTarget(
            f"{exc}; check --url (the partner's base URL), --path {exc.operation_id}=PATH (the partner's "
            f"own path) and the role ({_TESTS[args.role]})",
            operation_id=exc.operation_id,
            answered=exc.answered,
        ) from None
    sys.stdout.flush()
    return result.exit_code
