"""`serve --access-log`: one line per call on stdout (time, role, method, path, status, response code,
milliseconds); off by default, and then no layer at all."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from mpesa_atm.errors import ConfigError
from mpesa_atm.mocks import create_app
from mpesa_atm.mocks.access_log import AccessLog
from mpesa_atm.settings import load_settings
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, DOCUMENT_TOKEN
from tests.fixtures.servers import wait_for

# time role method path status code milliseconds [what a connection fault sent instead]
LINE = re.compile(
    r"^(?P<at>\S+) (?P<role>ipg|bank) (?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}|-) "
    r"(?P<code>-?\d+|-) (?P<ms>\d+\.\d) ms(?: (?P<note>.+))?$",
    re.MULTILINE,
)
TOO_LARGE = b'{"x": "' + b"a" * 70_000 + b'"}'


def logged(text: str) -> list[tuple[str, ...]]:
    """(role, method, path, status, code, note) of each access-log line of `text`."""
    return [m.group("role", "method", "path", "status", "code", "note") for m in LINE.finditer(text)]


def calls_logged(served, count: int) -> list[tuple[str, ...]]:
    """The lines of the calls made, once `count` are in (the fixture's health checks left out): a
    line is written once its answer has left, so the client may read the answer first."""

    def calls() -> list[tuple[str, ...]]:
        return [line for line in logged(served.log()) if line[2] != "/_harness/health"]

    with contextlib.suppress(AssertionError):  # fewer: the comparison that follows shows which
        wait_for(lambda: len(calls()) >= count, f"{count} access-log lines")
    return calls()


@pytest.mark.network
def test_serve_access_log_writes_a_line_per_call_on_stdout(serve):
    before = datetime.now(UTC) - timedelta(seconds=1)
    served = serve("--access-log")
    ipg, bank = served.ipg_url, served.bank_url
    httpx.post(f"{ipg}/_harness/tokens", json=DOCUMENT_TOKEN).raise_for_status()
    assert (
        httpx.post(f"{ipg}/token-redemption", json=DOCUMENT_REDEMPTION).json()["output_ResponseCode"] == "0"
    )
    assert (
        httpx.post(f"{ipg}/token-redemption", json=DOCUMENT_REDEMPTION).json()["output_ResponseCode"] == "-3"
    )
    headers = {"Content-Type": "application/json"}
    assert httpx.post(f"{bank}/token-generation", content=TOO_LARGE, headers=headers).status_code == 413
    assert (
        httpx.post(f"{bank}/token-generation", json=DOCUMENT_GENERATION).json()["output_ResponseCode"] == "0"
    )
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(
            f"{ipg}/token-redemption",
            json=DOCUMENT_REDEMPTION,
            headers={"X-Mpesa-Atm-Fault": "connection=reset"},
        )
    assert calls_logged(served, 6) == [
        ("ipg", "POST", "/_harness/tokens", "201", "-", None),
        ("ipg", "POST", "/token-redemption", "200", "0", None),
        ("ipg", "POST", "/token-redemption", "200", "-3", None),
        ("bank", "POST", "/token-generation", "413", "-1", None),
        ("bank", "POST", "/token-generation", "200", "0", None),
        ("ipg", "POST", "/token-redemption", "-", "-", "no answer (reset)"),
    ]
    for match in LINE.finditer(served.log()):
        at = datetime.fromisoformat(match["at"])
        assert before <= at <= datetime.now(UTC)
        assert float(match["ms"]) < 5000


@pytest.mark.network
def test_serve_writes_no_access_log_by_default(serve):
    served = serve()
    httpx.post(f"{served.bank_url}/token-generation", json=DOCUMENT_GENERATION).raise_for_status()
    # Stopped and waited for, serve and its role processes have written all they would have.
    assert served.stop() == 0
    assert LINE.findall(served.log()) == []
    assert "bank mock on" in served.log()


def test_off_the_app_has_no_access_log_layer(settings):
    def layers(changes: dict[str, object]) -> list[object]:
        app = create_app("bank", settings.replace(**changes))
        with TestClient(app):  # its lifespan: the store it opened closes
            return [getattr(m, "func", m) for m in app.middleware.middlewares]

    assert AccessLog not in layers({})
    assert AccessLog in layers({"access_log": True})


def test_a_line_in_process_says_what_a_malformed_answer_sent(make_mocks, capsys):
    mocks = make_mocks(access_log=True)
    mocks.ipg.post("/_harness/tokens", json=DOCUMENT_TOKEN)
    headers = {"X-Mpesa-Atm-Fault": "connection=malformed"}
    assert mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION, headers=headers).status_code == 200
    mocks.ipg.get("/_harness/journal")  # quotes output_ResponseCode, but is no envelope: no code
    assert logged(capsys.readouterr().out) == [
        ("ipg", "POST", "/_harness/tokens", "201", "-", None),
        ("ipg", "POST", "/token-redemption", "200", "-", "answer cut short (malformed)"),
        ("ipg", "GET", "/_harness/journal", "200", "-", None),
    ]


@pytest.mark.parametrize(
    ("raw", "on"), [("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False)]
)
def test_the_access_log_variable_is_true_or_false(raw, on):
    assert load_settings(env={"MPESA_ATM_ACCESS_LOG": raw}).access_log is on


def test_the_access_log_variable_refuses_other_words():
    with pytest.raises(ConfigError, match="MPESA_ATM_ACCESS_LOG must be true or false"):
        load_settings(env={"MPESA_ATM_ACCESS_LOG": "yes"})


def test_the_access_log_flag_beats_the_variable_which_beats_the_config_file(tmp_path):
    config = tmp_path / "mpesa-atm.toml"
    config.write_text("access_log = true\n")
    assert load_settings(config_file=config, env={}).access_log is True
    assert load_settings(config_file=config, env={"MPESA_ATM_ACCESS_LOG": "0"}).access_log is False
    assert load_settings(env={"MPESA_ATM_ACCESS_LOG": "0"}, access_log=True).access_log is True
    assert load_settings(env={}).access_log is False


def test_the_documented_lines_are_the_lines_written():
    page = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```text\n(.*?)```", page, flags=re.DOTALL)
    assert len(LINE.findall(block)) == len(block.strip().splitlines()) == 3
