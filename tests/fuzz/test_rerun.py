"""The page's "Run it again" command: the campaign's options as given, the seed it used, no secret; run
by a shell, it sends the same cases and finds the same findings."""

from __future__ import annotations

import argparse
import html
import re
import subprocess

import pytest

from mpesa_atm.cli import build_parser, main
from mpesa_atm.fuzz import campaign
from mpesa_atm.fuzz.command import rerun_command
from mpesa_atm.settings import BankAccount, Settings
from mpesa_atm.spec import OPERATION_PATHS
from mpesa_atm.transport import Network
from tests.fixtures.tls import Gateway
from tests.fuzz.partners import BROKEN

PASSWORD, API_KEY = "s3cret!", "k3y-s3cret"
CONTROL_TOKEN = "c0ntrol-t0ken"
# The shell variables the command reads its secrets from, as the user would have them set.
SECRETS = {"MPESA_ATM_PASSWORD": PASSWORD, "X_API_KEY": API_KEY}
URL = "https://ipg.example"
TOKENS = "bank_transaction_ref,transaction_id,msisdn,amount,currency\n" + "".join(
    f"{index:02d}{'ab' * 15},BVA{index:04d}X,24381{index:07d},{200 + index}.50,USD\n" for index in range(2)
)


pytestmark = pytest.mark.usefixtures("fuzz_command_in_process")


def _as_a_shell_runs_it(command: str) -> list[str]:
    """The words bash hands `mpesa-atm` for `command`, with the secrets' variables set."""
    shown = "mpesa-atm() { printf '%s\\0' \"$@\"; }; " + command
    done = subprocess.run(["bash", "-c", shown], capture_output=True, check=True, env=SECRETS, text=True)
    return done.stdout.split("\0")[:-1]


def _fuzz_parser() -> argparse.ArgumentParser:
    """The parser of `mpesa-atm fuzz` (argparse lists a subcommand's parser only in private fields)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = commands.choices["fuzz"]
    return parser


def test_the_command_gives_every_option_of_the_campaign_again_and_no_secret(tmp_path, monkeypatch, certs):
    (tmp_path / "harness.toml").write_text("client_timeout = 5\n")
    (tmp_path / "tokens.csv").write_text(TOKENS)
    (tmp_path / "headers").write_text(f"X-Api-Key: {API_KEY}\nX-Trace: one two\n")
    monkeypatch.chdir(tmp_path)
    given = {
        "path": ["--path", "token_redemption=/atm/redeem"],
        "max_examples": ["--max-examples", "7"],
        "workers": ["--workers", "2"],
        "timeout": ["--timeout", "2.5"],
        "wait": ["--wait", "0.5"],
        "max_failures": ["--max-failures", "2"],
        "max_time": ["--max-time", "90"],
        "max_response_time": ["--max-response-time", "0.75"],
        "currency": ["--currency", "USD", "--currency", "CDF"],
        "check": ["--check", "not_a_server_error"],
        "exclude_check": ["--exclude-check", "status_code_conformance"],
        "strict": ["--strict"],
        "require_exercised": ["--require-exercised"],
        "config": ["--config", "harness.toml"],
        "no_harness": ["--no-harness"],
        "control_token": ["--control-token", CONTROL_TOKEN],
        "bank_username": ["--username", "acme"],
        "bank_password": ["--password", PASSWORD],
        "bank_shortcode": ["--shortcode", "600100"],
        "other_shortcode": ["--other-shortcode", "600101"],
        "tokens": ["--tokens", "tokens.csv"],
        "auth_probes": ["--auth-probes", "0"],
        "cacert": ["--cacert", str(certs.ca)],
        "cert": ["--cert", str(certs.client_cert)],
        "key": ["--key", str(certs.client_key)],
        "insecure": ["--insecure"],
        "headers": ["-H", "@headers"],
        # What the campaign writes, not what it runs: left out of the command.
        "junit_xml": ["--junit-xml", "fuzz.xml"],
        "report": ["--report", "fuzz.html"],
        "har": ["--har", "fuzz.har"],
    }
    parser = _fuzz_parser()
    # --list-checks, as --help, prints and exits: there is no campaign to run again.
    shown = {"help", "list_checks", "url", "seed"}
    options = {action.dest for action in parser._actions if action.option_strings} - shown
    assert options == set(given), "a new option of fuzz: give it here, and to rerun_command if it runs"
    args = parser.parse_args(["ipg", "--url", URL, *(word for words in given.values() for word in words)])

    command = rerun_command(args, Network.from_args(args), seed=4242)

    assert PASSWORD not in command and API_KEY not in command and CONTROL_TOKEN not in command
    assert command.endswith("  # set first: MPESA_ATM_PASSWORD, MPESA_ATM_CONTROL_TOKEN, X_API_KEY")
    monkeypatch.chdir(certs.ca.parent)  # the files are found from anywhere
    words = _as_a_shell_runs_it(command)
    assert words[:2] == ["fuzz", "ipg"]
    again = parser.parse_args(words[1:])
    expected = {
        **vars(args),
        "seed": 4242,
        "config": str(tmp_path / "harness.toml"),
        "tokens": str(tmp_path / "tokens.csv"),
        "bank_password": None,  # MPESA_ATM_PASSWORD gives it
        "control_token": None,  # MPESA_ATM_CONTROL_TOKEN gives it
        "headers": [[header] for given in args.headers for header in given],  # one -H each
        "junit_xml": None,
        "report": None,
        "har": None,
    }
    assert vars(again) == expected


def test_a_campaign_of_defaults_is_run_again_with_its_role_url_and_seed_only():
    args = _fuzz_parser().parse_args(["bank", "--url", "http://127.0.0.1:8002/atm v1", "--wait", "10"])

    assert rerun_command(args, Network.from_args(args), seed=7) == (
        "mpesa-atm fuzz bank --url 'http://127.0.0.1:8002/atm v1' --seed 7"
    )


class Swapped:
    """An ASGI app that passes every call to `app`, which a test replaces between campaigns (the same
    URL, a fresh partner)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


@pytest.mark.network
def test_the_pages_command_run_again_sends_the_same_cases_and_finds_the_same(
    serve_tls_app, certs, tmp_path, monkeypatch, running
):
    broken = next(b for b in BROKEN if b.name == "redeems_twice")
    bank = BankAccount(username="acme", password=PASSWORD, shortcodes=("600100",))
    paths = {**OPERATION_PATHS, "token_redemption": "/atm/redeem"}

    def partner(name: str):
        """A fresh iPG that pays a token twice, with the bank's account and the two tokens issued."""
        # Running until the test ends, whoever serves it meanwhile.
        settings = Settings(db_path=str(tmp_path / f"{name}.sqlite3"), banks=(bank,), paths=paths)
        app = running.start(broken.app(settings))
        client = running.client(app, base_url="http://ipg.test")
        for row in TOKENS.splitlines()[1:]:
            fields = dict(zip(TOKENS.splitlines()[0].split(","), row.split(","), strict=True))
            assert client.post("/_harness/tokens", json={**fields, "username": "acme"}).status_code == 201
        return app

    partners = Swapped(partner("first"))
    gateway = Gateway(partners, "X-Api-Key", API_KEY)
    url = serve_tls_app(gateway, client_ca=True)
    results = []
    run_campaign = campaign.run_campaign

    def recorded(*args, **kwargs):
        results.append(run_campaign(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(campaign, "run_campaign", recorded)
    where = tmp_path / "where"
    where.mkdir()
    monkeypatch.chdir(where)
    (where / "harness.toml").write_text(
        'client_timeout = 5\n[bank]\nusername = "acme"\nshortcode = "600100"\n'
    )
    (where / "tokens.csv").write_text(TOKENS)
    # No --seed: the command gives the one the campaign chose.
    first = main(
        [
            "fuzz",
            "ipg",
            "--url",
            url,
            "--config",
            "harness.toml",
            "--password",
            PASSWORD,
            "--tokens",
            "tokens.csv",
            "--path",
            "token_redemption=/atm/redeem",
            "--strict",
            "--exclude-check",
            "status_code_conformance",
            "--auth-probes",
            "1",
            "--no-harness",
            "--currency",
            "USD",
            "--max-examples",
            "5",
            "--wait",
            "2",
            "--cacert",
            str(certs.ca),
            "--cert",
            str(certs.client_cert),
            "--key",
            str(certs.client_key),
            "-H",
            f"X-Api-Key: {API_KEY}",
            "-H",
            "X-Trace: rerun test",
            "--report",
            "page.html",
        ]
    )
    page = (where / "page.html").read_text()
    found = re.search(r'<p class="rerun">Run it again: <code>(.*?)</code>', page, flags=re.DOTALL)
    assert found, page
    command = html.unescape(found.group(1))
    assert PASSWORD not in page and API_KEY not in page
    assert f" --seed {results[0].seed} " in command

    partners.app = partner("second")  # the same URL, a partner that has not seen the first campaign
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPESA_ATM_PASSWORD", PASSWORD)
    again = main(_as_a_shell_runs_it(command))

    assert (first, again) == (1, 1)
    assert results[0].seed == results[1].seed
    assert results[0].sent == results[1].sent and len(results[0].sent) > 300
    assert [(f.check, f.operation, f.severity, f.title, f.occurrences) for f in results[1].findings] == [
        (f.check, f.operation, f.severity, f.title, f.occurrences) for f in results[0].findings
    ]
    assert "token_lifecycle" in {finding.check for finding in results[0].findings}
    assert set(gateway.seen) == {API_KEY.encode()}
