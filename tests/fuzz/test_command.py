"""`mpesa-atm fuzz` end to end over loopback: exit codes, the report, JUnit XML, paths, credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from mpesa_atm.cli import main
from mpesa_atm.fuzz import CampaignResult, Credentials, campaign
from mpesa_atm.fuzz.command import hypothesis_home
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import BankAccount, Settings
from mpesa_atm.spec import OPERATION_PATHS
from tests.fuzz.partners import BROKEN

pytestmark = pytest.mark.usefixtures("fuzz_command_in_process")


def test_credentials_and_timeout_come_from_a_flag_then_the_environment_then_the_config_file(
    tmp_path, monkeypatch
):
    config = tmp_path / "harness.toml"
    config.write_text(
        'client_timeout = 3\n[bank]\nusername = "acme"\npassword = "from-file"\nshortcode = "111"\n'
    )
    monkeypatch.setenv("MPESA_ATM_CONFIG", str(config))
    monkeypatch.setenv("MPESA_ATM_PASSWORD", "from-env")
    targets = []

    def fake_campaign(target, **options):
        targets.append(target)
        return CampaignResult("ipg", target.label, 1, 1, (), (), (), harness=False)

    monkeypatch.setattr(campaign, "run_campaign", fake_campaign)

    code = main(["fuzz", "ipg", "--url", "http://127.0.0.1:1", "--shortcode", "222"])

    assert code == 0
    assert [(t.credentials, t.timeout) for t in targets] == [(Credentials("acme", "from-env", "222"), 3.0)]


def test_config_flag_names_the_file_and_wins_over_the_variable(tmp_path, monkeypatch):
    flagged, variable = tmp_path / "flagged.toml", tmp_path / "variable.toml"
    flagged.write_text('client_timeout = 4\n[bank]\nusername = "acme"\nshortcode = "111"\n')
    variable.write_text('client_timeout = 7\n[bank]\nusername = "other"\n')
    monkeypatch.setenv("MPESA_ATM_CONFIG", str(variable))
    targets = []

    def fake_campaign(target, **options):
        targets.append(target)
        return CampaignResult("ipg", target.label, 1, 1, (), (), (), harness=False)

    monkeypatch.setattr(campaign, "run_campaign", fake_campaign)

    code = main(["fuzz", "ipg", "--url", "http://127.0.0.1:1", "--config", str(flagged)])

    assert code == 0
    assert [(t.credentials.username, t.credentials.shortcode, t.timeout) for t in targets] == [
        ("acme", "111", 4.0)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "cannot read config file"), ("client_timeout = [", "is not valid TOML")],
    ids=["missing", "malformed"],
)
def test_a_config_file_missing_or_malformed_exits_2_with_one_line(text, message, tmp_path, capsys):
    config = tmp_path / "harness.toml"
    if text is not None:
        config.write_text(text)

    code = main(["fuzz", "bank", "--url", "http://127.0.0.1:1", "--config", str(config)])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and str(config) in err[0]


@pytest.mark.network
def test_fuzz_of_the_running_mocks_exits_0_with_progress_and_junit(serve, tmp_path, capsys):
    served = serve()
    junit = tmp_path / "fuzz.xml"

    bank = main(["fuzz", "bank", "--url", served.bank_url, "--max-examples", "30", "--seed", "1"])
    bank_out = capsys.readouterr().out
    ipg = main(
        [
            "fuzz",
            "ipg",
            "--url",
            served.ipg_url,
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--junit-xml",
            str(junit),
        ]
    )
    ipg_out = capsys.readouterr().out

    assert (bank, ipg) == (0, 0), bank_out + ipg_out
    assert "\nFAILED " not in bank_out + ipg_out
    assert "POST /token-generation realistic: 15/15 cases" in bank_out
    assert "token lifecycle lifecycles: 30/30 lifecycles" in ipg_out
    assert ipg_out.rstrip().splitlines()[-1].startswith("mpesa-atm fuzz ipg: ")
    assert "; seed 1" in ipg_out.rstrip().splitlines()[-1]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == set()
    names = {(case.get("classname"), case.get("name")) for case in suite.iter("testcase")}
    assert ("POST /token-reversal", "wrong_password_rejected") in names


@pytest.mark.network
def test_fuzz_of_a_broken_partner_exits_1_and_shows_the_finding(serve_app, tmp_path, capsys):
    broken = next(b for b in BROKEN if b.name == "short_reference")
    url = serve_app(broken.app(Settings(db_path=str(tmp_path / "partner.sqlite3"))))
    junit, page, har = tmp_path / "fuzz.xml", tmp_path / "fuzz.html", tmp_path / "fuzz.har"

    files = ["--junit-xml", str(junit), "--report", str(page), "--har", str(har)]
    code = main(["fuzz", "bank", "--url", url, "--max-examples", "10", "--seed", "2", *files])

    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED bank_reference_length: POST /token-generation" in out
    assert 'Received: "' in out and "(31 characters)" in out
    assert "Documented: 32 characters" in out
    assert (
        f"curl -sS -X POST {url}/token-generation -H 'Content-Type: application/json' --data-raw '{{" in out
    )
    summary = out.rstrip().splitlines()[-1]
    assert summary.endswith("; seed 2")
    # One cause, one finding: the schema's complaint about the same short reference is folded under it.
    assert "FAILED: 1 failure (bank_reference_length)" in summary
    failed = {
        (case.get("name"), case.find("failure").get("type"))
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.find("failure") is not None
    }
    assert failed == {("bank_reference_length", "failure")}
    # The page and the recording (rendered and validated in test_page.py) are written too.
    html = page.read_text()
    assert "<title>mpesa-atm fuzz bank: FAILED</title>" in html
    assert f"mpesa-atm fuzz bank --url {url} --seed 2 --max-examples 10" in html
    assert json.loads(har.read_text())["log"]["entries"][0]["request"]["url"].startswith(url)


def test_unreachable_target_exits_2_with_one_line_after_the_wait(capsys, refused_url):
    url = refused_url

    started = time.monotonic()
    code = main(["fuzz", "bank", "--url", url, "--max-examples", "5", "--wait", "0.5"])
    assert 0.5 <= time.monotonic() - started < 10

    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"mpesa-atm: error: cannot reach the bank at {url}: connection refused"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x"], "--url must be an http:// or https:// URL"),
        (["--url", "http://127.0.0.1:1", "--path", "token_redemption=/x"], "no operation token_redemption"),
        (["--url", "http://127.0.0.1:1", "--check", "nope"], "unknown check(s): nope"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message, capsys):
    code = main(["fuzz", "bank", *args])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0]


@pytest.mark.network
def test_path_option_sends_an_operation_to_the_partners_own_path(serve_app, tmp_path, capsys):
    paths = {**OPERATION_PATHS, "token_generation": "/atm/v1/tokens"}
    url = serve_app(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"), paths=paths)))

    code = main(
        ["fuzz", "bank", "--url", url, "--path", "token_generation=/atm/v1/tokens", "--max-examples", "10"]
    )

    out = capsys.readouterr().out
    assert "\nFAILED " not in out, out
    assert "POST /atm/v1/tokens realistic: 5/5 cases" in out
    assert code == 0


@pytest.mark.network
def test_ipg_credentials_come_from_the_environment(serve_app, tmp_path, capsys, monkeypatch):
    bank = BankAccount(username="acme", password="s3cret!", shortcodes=("600100",))
    url = serve_app(create_app("ipg", Settings(db_path=str(tmp_path / "ipg.sqlite3"), banks=(bank,))))
    monkeypatch.setenv("MPESA_ATM_USERNAME", "acme")
    monkeypatch.setenv("MPESA_ATM_SHORTCODE", "600100")

    monkeypatch.setenv("MPESA_ATM_PASSWORD", "wrong")
    refused = main(["fuzz", "ipg", "--url", url, "--max-examples", "5", "--seed", "3"])
    refused_err = capsys.readouterr().err
    monkeypatch.setenv("MPESA_ATM_PASSWORD", "s3cret!")
    accepted = main(["fuzz", "ipg", "--url", url, "--max-examples", "10", "--seed", "3"])
    accepted_out = capsys.readouterr().out

    assert refused == 2
    assert "refused the credentials of 'acme' (-4 Authentication Failed)" in refused_err
    assert accepted == 0, accepted_out
    assert "s3cret!" not in accepted_out


@pytest.mark.network
def test_partner_that_drops_the_connection_is_a_finding(serve, capsys):
    served = serve(role="bank")
    rule = {"operation": "token-generation", "connection": "reset", "times": 1}
    assert httpx.post(f"{served.bank_url}/_harness/faults", json=rule, timeout=5).status_code == 201

    code = main(["fuzz", "bank", "--url", served.bank_url, "--max-examples", "10", "--seed", "4"])

    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED not_a_server_error: POST /token-generation (fuzz)" in out
    assert "The partner did not answer" in out
    assert "Received: no answer (connection reset by peer)" in out


@pytest.mark.parametrize(
    "code",
    [
        "from mpesa_atm.cli import build_parser; build_parser()",
        "from mpesa_atm.fuzz.expectations import expect",  # the lifecycle's model: no HTTP at all
    ],
    ids=["the-parser", "the-lifecycle-model"],
)
def test_what_does_not_fuzz_loads_neither_schemathesis_nor_http_clients(code):
    heavy = "('schemathesis', 'hypothesis', 'requests')"
    check = f"import sys; {code}; print(sorted(m for m in {heavy} if m in sys.modules))"

    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


def test_hypothesis_files_go_to_the_users_cache_folder_unless_hypothesis_is_told_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    in_home = tmp_path / ".cache" / "mpesa-atm" / "hypothesis"

    assert hypothesis_home({"XDG_CACHE_HOME": "/var/cache/u"}) == Path("/var/cache/u/mpesa-atm/hypothesis")
    assert hypothesis_home({"XDG_CACHE_HOME": "relative/cache"}) == in_home  # invalid, ignored
    assert hypothesis_home({}) == in_home
    assert hypothesis_home({"HYPOTHESIS_STORAGE_DIRECTORY": "/mine"}) is None


@pytest.mark.network
def test_fuzz_leaves_no_hypothesis_folder_where_it_is_run(serve_app, tmp_path):
    url = serve_app(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))))
    where, cache = tmp_path / "where", tmp_path / "cache"
    where.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_STORAGE_DIRECTORY"}
    cli = "import sys; from mpesa_atm.cli import main; sys.exit(main(sys.argv[1:]))"

    done = subprocess.run(
        [sys.executable, "-c", cli, "fuzz", "bank", "--url", url, "--max-examples", "5", "--seed", "1"],
        cwd=where,
        env={**env, "XDG_CACHE_HOME": str(cache)},
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in where.iterdir()) == []
    assert (cache / "mpesa-atm" / "hypothesis").is_dir()  # its caches went there


def test_fuzz_in_process_tells_hypothesis_the_users_cache_folder(monkeypatch, hypothesis_homes):
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/u")
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    nothing_found = CampaignResult("bank", "http://127.0.0.1:1", 1, 1, (), (), (), harness=False)
    monkeypatch.setattr(campaign, "run_campaign", lambda target, **options: nothing_found)

    assert main(["fuzz", "bank", "--url", "http://127.0.0.1:1"]) == 0
    assert hypothesis_homes == [Path("/var/cache/u/mpesa-atm/hypothesis")]
