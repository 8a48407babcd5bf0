"""`mpesa-atm verify ipg|bank --url BASE`: the contracts replayed against a provider, for a partner's CI.

Exit 0 when every interaction is verified, with warnings or without, 1 when one failed (or, with
--strict, has a warning), 2 on a usage error or a provider that cannot be reached (one line on stderr,
like every start-up error of the CLI), 130 when stopped by Ctrl-C (what was verified is printed and
written, the rest marked not run). Each interaction is printed as it is verified.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

from mpesa_atm.argtypes import path_mapping
from mpesa_atm.contracts.pacticipants import PROVIDER_NAMES
from mpesa_atm.errors import UsageError
from mpesa_atm.reporting.options import add_report_options
from mpesa_atm.reporting.outputs import OutputFiles
from mpesa_atm.settings import ENV_PREFIX, Settings, add_flags, load_settings
from mpesa_atm.transport import Network, add_network_options

if TYPE_CHECKING:
    from mpesa_atm.contracts.report import Report
    from mpesa_atm.contracts.verify import Broker

__all__ = ["register"]

_DESCRIPTION = """\
Replay the Pact contracts of the Generic ATM API against a running provider: the iPG (Token
Redemption and Token Reversal, as the bank calls them) or a bank (Token Generation, as the iPG
calls it). Before each interaction the verifier sets up the provider state it names by POSTing
{"state", "params", "action"} to the provider-states URL, and tears it down after.

The network options (--cacert, --cert, --key, --insecure, -H) apply to the provider and to its
provider-states endpoint; HTTPS_PROXY is honoured. Broker credentials may come from PACT_BROKER_TOKEN,
or PACT_BROKER_USERNAME and PACT_BROKER_PASSWORD; the control token from MPESA_ATM_CONTROL_TOKEN.
A mismatch where the document speaks (a code, a field missing, a reference's stated 32 characters)
fails the interaction; one where it is silent (the HTTP status, the Content-Type, a format it does not
give, which tokens may be reversed) is a WARNING naming its row of docs/spec-notes.md, as fuzz judges
it (mpesa_atm.judgement).
Exit status: 0 every interaction verified (warnings allowed), 1 a failure (or a warning, with
--strict), 2 a usage error or a provider that cannot be verified (unreachable, TLS refused, or every
request refused 401/403 by a gateway), 130 stopped by Ctrl-C (what was verified so far is printed
and written; the rest is marked not run).
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `verify` subcommand to the CLI's subparsers, its options in the order of --help."""
    verify = commands.add_parser(
        "verify",
        help="replay the Pact contracts against a provider (an iPG or a bank)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _provider_options(verify)
    _patience_options(verify)
    _broker_options(verify)
    _output_options(verify)
    add_network_options(verify)
    verify.set_defaults(handler=_run)


def _provider_options(parser: argparse.ArgumentParser) -> None:
    """The role the provider plays, where it is, the pacts, its own paths, its provider states."""
    parser.add_argument("role", choices=tuple(PROVIDER_NAMES), help="which side the provider plays")
    parser.add_argument("--url", required=True, metavar="BASE", help="the provider's base URL")
    parser.add_argument(
        "--pacts", metavar="DIR", help="pact files, a folder or one file (default: the contracts shipped)"
    )
    parser.add_argument(
        "--path",
        action="append",
        type=path_mapping,
        default=[],
        metavar="OPERATION=PATH",
        help="the provider's own path of an operation (token_generation, token_redemption, token_reversal)",
    )
    parser.add_argument(
        "--provider-states-url",
        metavar="URL",
        help="where to set up provider states (default: BASE/_harness/provider-states)",
    )
    add_flags(
        parser,
        "control_token",
        control_token=f"sent as 'Authorization: Bearer TOKEN' with each provider-state change"
        f" (default: {ENV_PREFIX}CONTROL_TOKEN, or control_token of the config file)",
    )


def _patience_options(parser: argparse.ArgumentParser) -> None:
    """How long to wait for an answer, and for a provider that is starting; the config file."""
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"per request (default: {ENV_PREFIX}CLIENT_TIMEOUT, or {Settings.client_timeout:g})",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wait this long for a provider that refuses connections while it starts (10)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML config file: control_token and client_timeout (default: {ENV_PREFIX}CONFIG;"
        " see docs/configuration.md)",
    )


def _broker_options(parser: argparse.ArgumentParser) -> None:
    """Pacts from a Pact Broker, and results published to it."""
    broker = parser.add_argument_group("Pact Broker")
    broker.add_argument("--broker-url", metavar="URL", help="read the pacts from this Pact Broker")
    broker.add_argument("--broker-token", metavar="TOKEN", help="bearer token (or PACT_BROKER_TOKEN)")
    broker.add_argument("--broker-username", metavar="NAME", help="basic auth (or PACT_BROKER_USERNAME)")
    broker.add_argument("--broker-password", metavar="PASSWORD", help="basic auth (or PACT_BROKER_PASSWORD)")
    broker.add_argument("--publish-results", action="store_true", help="publish the results to the broker")
    broker.add_argument("--provider-version", metavar="VERSION", help="with --publish-results (required)")
    broker.add_argument("--provider-branch", metavar="BRANCH", help="with --publish-results")
    broker.add_argument("--build-url", metavar="URL", help="with --publish-results: the CI build's URL")


def _output_options(parser: argparse.ArgumentParser) -> None:
    """How strictly the verdict is given, and what is written besides it."""
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on warnings too: a mismatch where the document is silent (its HTTP statuses, "
        "Content-Type, formats, which tokens may be reversed)",
    )
    parser.add_argument(
        "--junit-xml",
        metavar="FILE",
        help="also write the results as JUnit XML: one test case per interaction",
    )
    add_report_options(
        parser,
        "each interaction with its provider states, the request, what the contract expects and what "
        "came back",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print the Pact verifier's own report"
    )


def _broker(args: argparse.Namespace) -> Broker | None:
    from mpesa_atm.contracts.verify import Broker

    if not args.broker_url:
        given = [
            option
            for option, value in (
                ("--broker-token", args.broker_token),
                ("--broker-username", args.broker_username),
                ("--broker-password", args.broker_password),
            )
            if value
        ]
        if given:
            raise UsageError(f"{given[0]} needs --broker-url")
        return None
    if args.broker_token and (args.broker_username or args.broker_password):
        raise UsageError("give --broker-token or --broker-username/--broker-password, not both")
    token = args.broker_token
    username, password = args.broker_username, args.broker_password
    # The environment fills in what the flags leave out, one way of authenticating only.
    if not (token or username or password):
        token = os.environ.get("PACT_BROKER_TOKEN") or None
        if not token:
            username = os.environ.get("PACT_BROKER_USERNAME") or None
            password = os.environ.get("PACT_BROKER_PASSWORD") or None
    return Broker(args.broker_url, token=token, username=username, password=password)


def _run(args: argparse.Namespace) -> int:
    # Imported here: `mpesa-atm serve` builds the same parser and needs none of it.
    from mpesa_atm.contracts.report import render_outcome
    from mpesa_atm.contracts.verify import Publication, VerificationError, verify_provider

    _quiet_pact_logs()

    publish = None
    if args.publish_results:
        if not args.provider_version:
            raise UsageError("--publish-results needs --provider-version")
        if not args.broker_url:
            raise UsageError("--publish-results publishes to a Pact Broker: give --broker-url")
        publish = Publication(args.provider_version, branch=args.provider_branch, build_url=args.build_url)
    else:
        for option, value in (
            ("--provider-version", args.provider_version),
            ("--provider-branch", args.provider_branch),
            ("--build-url", args.build_url),
        ):
            if value:
                raise UsageError(f"{option} is only used with --publish-results")
    broker = _broker(args)
    network = Network.from_args(args)
    outputs = OutputFiles.check(
        [("--report", args.report), ("--har", args.har), ("--junit-xml", args.junit_xml)]
    )
    settings = load_settings(config_file=args.config)  # the control token and time-out the flags leave out
    report = verify_provider(
        args.role,
        args.url,
        pacts=args.pacts,
        paths=dict(args.path),
        provider_states_url=args.provider_states_url,
        broker=broker,
        publish=publish,
        control_token=args.control_token or settings.control_token,
        timeout=args.timeout if args.timeout is not None else settings.client_timeout,
        wait=args.wait,
        record=bool(args.report or args.har),
        network=network,
        strict=args.strict,
        on_start=lambda report: print(report.header(), flush=True),
        on_outcome=lambda outcome: print(render_outcome(outcome), flush=True),
    )
    _write(args, report)
    print(report.ending(verbose=args.verbose, written=outputs.written()), flush=True)
    if report.interrupted:
        return 130
    if report.publish_errors and report.ok:
        raise VerificationError(f"the results were not published: {report.publish_errors[0]}")
    return 0 if report.ok else 1


def _write(args: argparse.Namespace, report: Report) -> None:
    """The files asked for, before the summary line: they are there when it is printed."""
    if args.junit_xml:
        from mpesa_atm.contracts.report import write_junit

        write_junit(report, args.junit_xml)
    if args.report or args.har:
        from mpesa_atm.contracts.page import write_har_of, write_report

        if args.report:
            write_report(args.report, report)
        if args.har:
            write_har_of(args.har, report)


def _quiet_pact_logs() -> None:
    """Pact's core logs what our report already says (a failed state change, a mismatch); with no
    logging configured, Python would print those records on stderr."""
    logger = logging.getLogger("pact")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
