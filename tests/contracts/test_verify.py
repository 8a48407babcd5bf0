"""`mpesa-atm verify`: the contracts replayed by Pact's verifier against real servers on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from mpesa_atm.cli import main
from mpesa_atm.contracts import BANK, IPG, pact_dir
from mpesa_atm.contracts.generate import pact_file_name, read_pact
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import BankAccount, Settings
from mpesa_atm.spec import OPERATION_PATHS
from tests.contracts.fixtures import AlteredAnswer, FakeBroker
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.network


def descriptions(consumer: str, provider: str) -> list[str]:
    return [
        i["description"] for i in read_pact(pact_dir() / pact_file_name(consumer, provider))["interactions"]
    ]


@pytest.fixture
def bank_url(serve_app, tmp_path) -> str:
    """The bank mock in a thread of the test process: quicker to start than `mpesa-atm serve`."""
    return serve_app(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))))


def verify(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["verify", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_served_mocks_honour_every_interaction_of_their_contracts(serve, capsys, monkeypatch):
    monkeypatch.delenv("PACT_DO_NOT_TRACK", raising=False)
    served = serve()
    for role, consumer, provider in (("ipg", BANK, IPG), ("bank", IPG, BANK)):
        status, out, err = verify(capsys, role, "--url", served.urls[role])
        assert status == 0, out + err
        expected = descriptions(consumer, provider)
        for description in expected:
            assert f"ok      {description}  (consumer {consumer})" in out
        assert f"{len(expected)} interactions: {len(expected)} verified, 0 with warnings, 0 failed" in out
    assert os.environ["PACT_DO_NOT_TRACK"] == "true"


def test_a_provider_that_breaks_one_interaction_fails_with_the_mismatch_shown(serve_app, tmp_path, capsys):
    # The iPG mock with one rule altered: a repeated reversal is answered -1 instead of -3.
    app = create_app("ipg", Settings(db_path=str(tmp_path / "broken.sqlite3")))
    url = serve_app(AlteredAnswer(app, path="/token-reversal", was="-3", becomes="-1"))
    status, out, err = verify(capsys, "ipg", "--url", url)
    assert status == 1, out + err
    broken = "a token reversal that repeats one already made"
    assert f"FAILED  {broken}  (consumer {BANK})" in out
    assert "given: the bank is registered; a token exists; the reversal was already made" in out
    assert (
        "$.output_ResponseCode: received \"-1\", the contract expects it to be equal to '-3' (String)" in out
    )
    assert "RuntimeError" not in out + err
    others = [d for d in descriptions(BANK, IPG) if d != broken]
    for description in others:
        assert f"ok      {description}" in out
    assert f"{len(others) + 1} interactions: {len(others)} verified, 0 with warnings, 1 failed" in out


def test_a_provider_state_the_provider_refuses_is_reported_with_the_providers_reason(
    serve_app, tmp_path, capsys
):
    # An iPG mock that knows the bank by another password: "the bank is registered" cannot hold.
    other = BankAccount(username="fnb", password="another", shortcodes=("49272",))
    app = create_app("ipg", Settings(db_path=str(tmp_path / "other.sqlite3"), banks=(other,)))
    status, out, err = verify(capsys, "ipg", "--url", serve_app(app))
    assert status == 1, out + err
    assert "One or more of the setup state change handlers has failed" in out
    assert (
        "setup of provider state 'the bank is registered' "
        '{"password": "P@ssword123", "shortcode": "49272", "username": "fnb"}: HTTP 409 '
        "'the bank is registered': the iPG mock's bank 'fnb' has another password"
    ) in out
    assert "0 verified, 0 with warnings, 7 failed" in out


def test_the_control_token_is_sent_with_each_state_change(serve, capsys, tmp_path):
    served = serve("--control-token", "s3cret", role="bank")
    status, out, err = verify(capsys, "bank", "--url", served.bank_url, "--control-token", "s3cret")
    assert status == 0, out + err
    status, out, err = verify(capsys, "bank", "--url", served.bank_url)
    # Every request refused 401 outside the envelope: nothing could be verified, said in one line.
    assert status == 2, out + err
    [line] = err.strip().splitlines()
    assert "refused every request with HTTP 401" in line
    assert "this mock's control API needs 'Authorization: Bearer <control token>'" in line
    assert line.endswith("(or the control token with --control-token)")
    config = tmp_path / "harness.toml"
    config.write_text('control_token = "s3cret"\n')
    status, out, err = verify(capsys, "bank", "--url", served.bank_url, "--config", str(config))
    assert status == 0, out + err


def test_a_config_file_missing_is_one_line_and_exit_2(capsys, tmp_path):
    missing = tmp_path / "missing.toml"
    status, out, err = verify(capsys, "bank", "--url", "http://127.0.0.1:1", "--config", str(missing))
    assert status == 2 and out == ""
    [line] = err.strip().splitlines()
    assert "cannot read config file" in line and str(missing) in line


def test_pacts_from_a_folder_are_those_of_the_provider_verified(bank_url, tmp_path, capsys):
    shutil.copy(pact_dir() / pact_file_name(IPG, BANK), tmp_path)
    status, out, err = verify(capsys, "bank", "--url", bank_url, "--pacts", str(tmp_path))
    assert status == 0, out + err
    assert f"pacts: {tmp_path / pact_file_name(IPG, BANK)}" in out
    status, out, err = verify(capsys, "ipg", "--url", bank_url, "--pacts", str(tmp_path))
    assert status == 2
    assert err == f"mpesa-atm: error: --pacts {tmp_path}: no pact has provider '{IPG}' (found: {BANK})\n"


def test_a_pact_with_a_changed_expectation_fails_against_the_mock(bank_url, tmp_path, capsys):
    pact = read_pact(pact_dir() / pact_file_name(IPG, BANK))
    changed = pact["interactions"][0]
    changed["response"]["body"]["content"]["output_ResponseCode"] = "-1"
    (tmp_path / "changed.json").write_text(json.dumps(pact))
    status, out, _ = verify(capsys, "bank", "--url", bank_url, "--pacts", str(tmp_path / "changed.json"))
    assert status == 1
    assert f"FAILED  {changed['description']}" in out
    assert "$.output_ResponseCode: received \"0\", the contract expects it to be equal to '-1'" in out


def test_a_status_the_document_does_not_give_is_a_warning_and_fails_only_under_strict(
    bank_url, tmp_path, capsys
):
    # The document names no HTTP status: a pact wanting 201 where the mock answers 200 differs from
    # the harness's reading (spec-notes row 21), not from the document.
    pact = read_pact(pact_dir() / pact_file_name(IPG, BANK))
    changed = pact["interactions"][0]
    changed["response"]["status"] = 201
    (tmp_path / "changed.json").write_text(json.dumps(pact))
    argv = ("bank", "--url", bank_url, "--pacts", str(tmp_path / "changed.json"))
    status, out, err = verify(capsys, *argv)
    assert status == 0, out + err
    assert f"WARNING {changed['description']}  (consumer {IPG})" in out
    assert (
        "warning: status: expected 201 but was 200; left open by the document: the HTTP statuses of "
        "outcomes and refusals (the harness's reading, docs/spec-notes.md row 21)"
    ) in out
    assert "2 interactions: 1 verified, 1 with warnings, 0 failed" in out
    status, out, err = verify(capsys, *argv, "--strict")
    assert status == 1, out + err
    assert "2 interactions: 1 verified, 1 with warnings, 0 failed (--strict: warnings fail)" in out


def test_a_provider_on_its_own_paths_is_verified_with_path(serve_app, tmp_path, capsys):
    paths = {**OPERATION_PATHS, "token_generation": "/atm/v1/tokens"}
    url = serve_app(create_app("bank", Settings(db_path=str(tmp_path / "b.sqlite3"), paths=paths)))
    status, out, _ = verify(capsys, "bank", "--url", url)
    assert status == 1
    assert "status: expected 200 but was 404" in out
    status, out, err = verify(capsys, "bank", "--url", url, "--path", "token_generation=/atm/v1/tokens")
    assert status == 0, out + err
    assert "(requests to /token-generation sent to /atm/v1/tokens)" in out


def broker_for(serve_app, provider: str, **options) -> FakeBroker:
    consumer = BANK if provider == IPG else IPG
    broker = FakeBroker(read_pact(pact_dir() / pact_file_name(consumer, provider)), **options)
    broker.base = serve_app(broker.app)
    return broker


def test_pacts_from_a_broker_are_verified_and_the_results_published(bank_url, serve_app, capsys):
    broker = broker_for(serve_app, BANK)
    status, out, err = verify(
        capsys,
        *("bank", "--url", bank_url, "--broker-url", broker.base, "--broker-token", "t0k3n"),
        *("--publish-results", "--provider-version", "1.2.3", "--provider-branch", "main"),
    )
    assert status == 0, out + err
    assert f"pacts: Pact Broker {broker.base}" in out
    assert "2 interactions: 2 verified, 0 with warnings, 0 failed" in out
    assert "note: fake broker notice" in out
    ((headers, _),) = broker.requested("GET", "/pact")
    assert headers["authorization"] == "Bearer t0k3n"
    assert broker.requested("PUT", f"/pacticipants/{BANK}/branches/main/versions/1.2.3")
    ((_, body),) = broker.requested("POST", "/pact/results")
    assert json.loads(body)["providerApplicationVersion"] == "1.2.3"
    assert json.loads(body)["success"] is True


def test_broker_credentials_can_come_from_the_environment(bank_url, serve_app, capsys, monkeypatch):
    monkeypatch.delenv("PACT_BROKER_TOKEN", raising=False)
    monkeypatch.setenv("PACT_BROKER_USERNAME", "ci")
    monkeypatch.setenv("PACT_BROKER_PASSWORD", "pw")
    broker = broker_for(serve_app, BANK)
    status, out, err = verify(capsys, "bank", "--url", bank_url, "--broker-url", broker.base)
    assert status == 0, out + err
    ((headers, _),) = broker.requested("GET", "/pact")
    assert headers["authorization"] == "Basic Y2k6cHc="  # ci:pw
    assert not broker.requested("POST", "/pact/results")  # published only when asked


def test_results_the_broker_refuses_exit_2_after_the_report(bank_url, serve_app, capsys):
    broker = broker_for(serve_app, BANK, results_status=403)
    status, out, err = verify(
        capsys,
        *("bank", "--url", bank_url, "--broker-url", broker.base, "--broker-token", "t"),
        *("--publish-results", "--provider-version", "1.2.3"),
    )
    assert status == 2
    assert "2 interactions: 2 verified, 0 with warnings, 0 failed" in out
    assert err.startswith("mpesa-atm: error: the results were not published: ")
    assert "403 Forbidden" in err
    assert err.count("\n") == 1


def test_a_broker_without_pacts_for_the_provider_exits_2(bank_url, serve_app, capsys):
    broker = broker_for(serve_app, BANK)
    status, out, err = verify(capsys, "bank", "--url", bank_url, "--broker-url", broker.base + "/nowhere")
    assert status == 2
    # The header is printed as the verification starts; no interaction follows it.
    assert out.startswith(f"Verifying {BANK} at {bank_url}\n")
    assert "interaction" not in out
    assert err.startswith(f"mpesa-atm: error: no interaction of {BANK} was verified: ")
    assert err.count("\n") == 1


def test_an_unreachable_provider_exits_2_with_one_line_after_the_wait(capsys, refused_url):
    url = refused_url
    started = time.monotonic()
    status, out, err = verify(capsys, "ipg", "--url", url, "--wait", "0.5")
    assert 0.5 <= time.monotonic() - started < 5
    assert status == 2
    assert out == ""
    assert err.startswith(f"mpesa-atm: error: cannot reach the provider at {url}: ")
    assert err.count("\n") == 1


@pytest.mark.network
def test_verify_started_with_the_mocks_waits_for_them(tmp_path):
    """The docs' `mpesa-atm serve &` then `mpesa-atm verify ...` at once, as typed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    # Named before serve starts, as typed: port 0 and the banner would not be the docs' sequence.
    ipg, bank = free_port(), free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpesa_atm",
            "serve",
            "--ipg-port",
            str(ipg),
            "--bank-port",
            str(bank),
            "--db",
            str(tmp_path / "db.sqlite3"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        verified = subprocess.run(
            [sys.executable, "-m", "mpesa_atm", "verify", "bank", "--url", f"http://127.0.0.1:{bank}"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "ftp://x"], "--url 'ftp://x' is not an http:// or https:// URL"),
        (["--url", "http://127.0.0.1:1", "--publish-results"], "--publish-results needs --provider-version"),
        (
            ["--url", "http://127.0.0.1:1", "--publish-results", "--provider-version", "1"],
            "--publish-results publishes to a Pact Broker: give --broker-url",
        ),
        (["--url", "http://127.0.0.1:1", "--provider-version", "1"], "--provider-version is only used with"),
        (["--url", "http://127.0.0.1:1", "--broker-token", "t"], "--broker-token needs --broker-url"),
        (
            [
                "--url",
                "http://127.0.0.1:1",
                "--broker-url",
                "http://b",
                "--broker-token",
                "t",
                "--broker-username",
                "u",
            ],
            "give --broker-token or --broker-username/--broker-password, not both",
        ),
        (["--url", "http://127.0.0.1:1", "--pacts", "/nonexistent"], "--pacts /nonexistent: no such file"),
        (["--url", "http://127.0.0.1:1", "--timeout", "0"], "--timeout must be more than 0 seconds"),
        (
            ["--url", "http://127.0.0.1:1", "--path", "token_generation=/x"],
            "--path token_generation: the ipg serves token_redemption, token_reversal",
        ),
        (["--url", "http://127.0.0.1:1", "--path", "token_reversal=x"], "a path starts with /"),
        (
            ["--url", "http://127.0.0.1:1", "--path", "token_reversal=/x", "--broker-url", "http://b"],
            "--path rewrites local pact files: it cannot change the broker's",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv, message):
    status, out, err = verify(capsys, "ipg", *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("mpesa-atm: error: ")
    assert message in err
    assert err.count("\n") == 1
