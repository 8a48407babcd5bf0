"""`mpesa-atm fuzz ipg|bank --url BASE`: a campaign against a partner's running implementation, with the
console and JUnit reporters; it words the library's errors in terms of its flags.

Exit 0 when nothing breaks the document (warnings allowed, unless --strict; checks not exercised
allowed, unless --require-exercised), 1 when something does (or an answer is slower than
--max-response-time), 2 for a usage error or a target that cannot be tested (one line), a partner that
let nothing through (the summary line says what it answered instead) or a --max-time that came before
any check was exercised, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from mpesa_atm.argtypes import path_mapping, positive_seconds, whole_number
from mpesa_atm.errors import ConfigError, HarnessError, UsageError, WrongTarget
from mpesa_atm.fuzz.rerun import DEFAULTS, rerun_command
from mpesa_atm.operations import CONTROL_PREFIX, ROLES, operations
from mpesa_atm.reporting.options import add_report_options
from mpesa_atm.reporting.outputs import BeforeLastLine, OutputFiles
from mpesa_atm.settings import ENV_PREFIX, Settings, add_flags, flags_of, load_settings
from mpesa_atm.transport import Network, add_network_options

if TYPE_CHECKING:  # imported when a campaign runs: `mpesa-atm serve` builds the same parser
    from mpesa_atm.fuzz.checks import Credentials
    from mpesa_atm.fuzz.events import Listener
    from mpesa_atm.fuzz.results import CampaignResult

__all__ = ["hypothesis_home", "register", "rerun_command"]  # rerun_command: fuzz/rerun.py's

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


_DESCRIPTION = (
    "Run a property-based campaign from the OpenAPI documents against a partner at URL and check "
    "every answer against the document's rules. A failure breaks the document; a warning is a "
    "partner laxer than the harness's own choices, which the document leaves open. A check no case "
    "exercised is listed as not exercised, with what it needs. Exit 0: no failure (warnings and "
    "checks not exercised allowed unless --strict, --require-exercised); 1: a failure; 2: usage "
    "error, a target that cannot be reached, or a partner that let nothing through (every valid "
    "case refused: the summary says what it answered), or a --max-time that ended the campaign before "
    "any check was exercised; 130: interrupted."
)


def register(commands: Any) -> None:
    """Adds the `fuzz` subcommand to the `mpesa-atm` parser's subcommands, its options in the order
    of --help."""
    fuzz = commands.add_parser(
        "fuzz",
        help="fuzz a partner's Token Generation (bank) or Token Redemption/Reversal (iPG) endpoints",
        description=_DESCRIPTION,
    )
    _target_options(fuzz)
    _size_options(fuzz)
    _output_options(fuzz)
    _patience_options(fuzz)
    _bound_options(fuzz)
    _check_options(fuzz)
    _harness_options(fuzz)
    _ipg_options(fuzz)
    add_network_options(fuzz)
    fuzz.set_defaults(handler=_fuzz)


def _target_options(parser: argparse.ArgumentParser) -> None:
    """The role the partner plays, where it is, its own paths."""
    parser.add_argument("role", choices=ROLES, help="the side the partner implements")
    parser.add_argument(
        "--url", required=True, metavar="BASE", help="the partner's base URL (paths are appended)"
    )
    parser.add_argument(
        "--path",
        action="append",
        type=path_mapping,
        default=[],
        metavar="OPERATION=PATH",
        help=f"the partner's own path of an operation ({', '.join(operations())})",
    )


def _size_options(parser: argparse.ArgumentParser) -> None:
    """How many cases, from which seed, on how many operations at once."""
    parser.add_argument(
        "--max-examples",
        type=_positive,
        default=DEFAULTS["max_examples"],
        metavar="N",
        help="cases per operation (100)",
    )
    parser.add_argument(
        "--seed", type=_seed, metavar="N", help="same seed, same cases (default: random, printed)"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=DEFAULTS["workers"],
        metavar="N",
        help="operations fuzzed at once (1)",
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    """The files a campaign writes besides the console."""
    parser.add_argument("--junit-xml", metavar="FILE", help="also write the results as JUnit XML")
    add_report_options(parser, "every check with its section and verdict, the findings and charts")


def _patience_options(parser: argparse.ArgumentParser) -> None:
    """How long to wait for an answer, and for a partner that is starting."""
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help=f"seconds to wait for an answer (default: {ENV_PREFIX}CLIENT_TIMEOUT, else 10)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULTS["wait"],
        metavar="S",
        help="wait this long for a partner that refuses connections while it starts (10)",
    )


def _bound_options(parser: argparse.ArgumentParser) -> None:
    """Bounds on the campaign, with Schemathesis's names."""
    parser.add_argument(
        "--max-failures",
        type=_positive,
        metavar="N",
        help="stop after N failures (distinct, by check and operation; warnings too with --strict): exit 1",
    )
    parser.add_argument(
        "--max-time",
        type=positive_seconds,
        metavar="S",
        help="end the campaign S seconds after it starts: the cases not sent are not exercised "
        "(a case under way ends first)",
    )
    parser.add_argument(
        "--max-response-time",
        type=positive_seconds,
        metavar="S",
        help="an answer slower than S seconds fails the check response_time",
    )


def _check_options(parser: argparse.ArgumentParser) -> None:
    """What the cases hold and which checks judge them, and how strictly."""
    parser.add_argument(
        "--currency",
        action="append",
        metavar="CODE",
        help="currency of the realistic cases; repeat for several (default: CDF and USD, the document's)",
    )
    parser.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only this check; repeatable (--list-checks lists them)",
    )
    parser.add_argument(
        "--exclude-check",
        action="append",
        default=[],
        metavar="NAME",
        help="do not run this check; repeatable",
    )
    parser.add_argument(
        "--list-checks",
        action=_ListChecks,
        help="list every check, with the document's section or docs/spec-notes.md row of each rule it "
        "holds the partner to, and exit",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="warnings (a partner laxer than the harness's formats, statuses, Content-Type) fail too",
    )
    parser.add_argument(
        "--require-exercised",
        action="store_true",
        help="a check no case exercised fails the campaign too (exit 1, naming it): e.g. token_lifecycle "
        "without --tokens nor a mock's control API",
    )


class _ListChecks(argparse.Action):
    """--list-checks prints the checks and exits 0 as soon as it is read, as --help does: no role nor
    --url is needed."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from mpesa_atm.fuzz.checks import CHECKS
        from mpesa_atm.fuzz.report import render_checks

        print(render_checks(CHECKS))
        parser.exit(0)


def _harness_options(parser: argparse.ArgumentParser) -> None:
    """The config file, and a mock's control API."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file: the bank's credentials ([bank]), control_token and client_timeout (default: "
        f"{ENV_PREFIX}CONFIG; see docs/configuration.md)",
    )
    parser.add_argument(
        "--no-harness",
        action="store_true",
        help=f"do not use the mock's {CONTROL_PREFIX} control API even if the target has one",
    )
    add_flags(
        parser,
        "control_token",
        control_token=f"sent as 'Authorization: Bearer TOKEN' on the calls to a mock's {CONTROL_PREFIX} "
        f"control API only, for a mock served with one (default: {ENV_PREFIX}CONTROL_TOKEN, or control_token "
        "of the config file; prefer those: a flag shows in the process list)",
    )


def _ipg_options(parser: argparse.ArgumentParser) -> None:
    """What testing an iPG needs: the bank's credentials, tokens it knows, the probes' budget."""
    credentials = parser.add_argument_group(
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
        default=DEFAULTS["auth_probes"],
        metavar="N",
        help="send at most N requests with a wrong password, and N with another shortcode (3; 0: none), "
        "as an iPG locks an account after a few failed logins",
    )


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


def _fuzz(args: argparse.Namespace) -> int:
    settings = load_settings(config_file=args.config, **flags_of(args))
    credentials = _credentials(args, settings)
    _keep_hypothesis_files_out_of_the_way()
    network = Network.from_args(args)  # a file it cannot use: its own one line, not the credentials'
    outputs = OutputFiles.check(
        [("--report", args.report), ("--har", args.har), ("--junit-xml", args.junit_xml)]
    )
    console = BeforeLastLine()
    listeners = _listeners(args, network, console)
    try:
        result = _campaign(args, settings, credentials, network, listeners)
    except (UsageError, ConfigError, WrongTarget) as exc:
        raise _in_flags_words(exc, args.role) from None
    finally:
        console.release(outputs.written())  # the files written, on the line before the summary
    sys.stdout.flush()
    return result.exit_code


def _credentials(args: argparse.Namespace, settings: Settings) -> Credentials | None:
    """The bank's credentials a campaign against an iPG sends (None against a bank)."""
    from mpesa_atm.fuzz.checks import Credentials

    if args.role != "ipg":
        return None
    if not settings.bank_shortcode.isdigit():
        raise UsageError(f"--shortcode must be digits, not {settings.bank_shortcode!r}")
    return Credentials(
        username=settings.bank_username,
        password=settings.bank_password,
        shortcode=settings.bank_shortcode,
        other_shortcode=args.other_shortcode,
    )


def _keep_hypothesis_files_out_of_the_way() -> None:
    """Hypothesis keeps caches (the constants it read in the source, a Unicode table) in ./.hypothesis
    unless told otherwise, and a command should leave nothing where it is run: they go to the user's
    cache folder, as the command owns its process. The campaign keeps no example database at all
    (unit.py: the printed seed is how to run it again). The library leaves Hypothesis's home alone:
    a test suite that calls run_campaign keeps its own tests' examples where its Hypothesis does."""
    from hypothesis.configuration import set_hypothesis_home_dir

    home = hypothesis_home()
    if home is not None:
        set_hypothesis_home_dir(home)


def _listeners(args: argparse.Namespace, network: Network, console: BeforeLastLine) -> list[Listener]:
    """The reporters the options ask for, the console last: the files are written before the summary
    line, so that they are there when it is printed; the console's closing block is held, for the
    files written to be named on the line before the summary."""
    from mpesa_atm.fuzz.events import CampaignFinished
    from mpesa_atm.fuzz.page import HtmlReporter
    from mpesa_atm.fuzz.report import ConsoleReporter, HarReporter, JUnitReporter

    listeners: list[Listener] = []
    if args.junit_xml:
        listeners.append(JUnitReporter(args.junit_xml))
    if args.report:
        listeners.append(HtmlReporter(args.report, rerun=functools.partial(rerun_command, args, network)))
    if args.har:
        listeners.append(HarReporter(args.har))
    listeners.append(lambda event: console.hold() if isinstance(event, CampaignFinished) else None)
    listeners.append(ConsoleReporter(cast(TextIO, console)))
    return listeners


def _campaign(
    args: argparse.Namespace,
    settings: Settings,
    credentials: Credentials | None,
    network: Network,
    listeners: list[Listener],
) -> CampaignResult:
    from mpesa_atm.fuzz.campaign import run_campaign
    from mpesa_atm.fuzz.cases import DEFAULT_CURRENCIES
    from mpesa_atm.fuzz.target import Target
    from mpesa_atm.fuzz.tokens import read_tokens

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
    return run_campaign(
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
        max_failures=args.max_failures,
        max_time=args.max_time,
        max_response_time=args.max_response_time,
        listeners=listeners,
    )


def _in_flags_words(exc: UsageError | ConfigError | WrongTarget, role: str) -> HarnessError:
    """The library's error said in terms of the command's flags, with what to do about it."""
    from mpesa_atm.fuzz.target import ControlRefused

    if isinstance(exc, UsageError):
        return UsageError(exc.as_flag(_FLAGS))
    if isinstance(exc, ControlRefused):
        return ConfigError(f"{exc}; {_CONTROL_TOKEN_FROM}")
    if isinstance(exc, ConfigError):  # run_campaign's other one: the iPG refused the credentials
        return ConfigError(f"{exc}; {_CREDENTIALS_FROM}")
    if "gateway" in exc.answered:  # a 401 or 403 outside the envelope: in front of the API
        return WrongTarget(
            f"{exc}; are credentials or a gateway header missing? Give what it wants with -H 'Name: "
            "value' (or --cert and --key), or check --url",
            operation_id=exc.operation_id,
            answered=exc.answered,
        )
    return WrongTarget(
        f"{exc}; check --url (the partner's base URL), --path {exc.operation_id}=PATH (the partner's "
        f"own path) and the role ({_TESTS[role]})",
        operation_id=exc.operation_id,
        answered=exc.answered,
    )
