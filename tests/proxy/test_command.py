"""`mpesa-atm proxy` as a user runs it: a process in front of the mocks or of a broken upstream, its
line per exchange, its evidence and exit code after SIGINT or SIGTERM; its refusals at start-up."""

from __future__ import annotations

import functools
import json
import signal
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mpesa_atm.cli import main
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.servers import wait_for
from tests.fixtures.tokens import seed_token
from tests.proxy.processes import Proxy
from tests.proxy.test_app import answering


@pytest.mark.network
def test_the_mocks_through_two_proxies_give_no_failure_and_the_evidence_after_sigint(
    settings: Settings, serve_app: Callable[[Any], str], proxies: Callable[..., Proxy]
) -> None:
    # The mocks served in this process (their lifespans in uvicorn's thread): two processes fewer.
    ipg_url, bank_url = serve_app(create_app("ipg", settings)), serve_app(create_app("bank", settings))
    seed_token(ipg_url)
    ipg, bank = proxies("ipg", ipg_url), proxies("bank", bank_url)
    ipg.ready(), bank.ready()
    redeemed = httpx.post(f"{ipg.url}/token-redemption", json=DOCUMENT_REDEMPTION, timeout=10)
    generated = httpx.post(f"{bank.url}/token-generation", json=DOCUMENT_GENERATION, timeout=10)
    assert redeemed.json()["output_ResponseCode"] == generated.json()["output_ResponseCode"] == "0"
    for proxy, label in (
        (ipg, "ipg POST /token-redemption 200 0 "),
        (bank, "bank POST /token-generation 200 0 "),
    ):
        wait_for(functools.partial(lambda p, text: text in p.output(), proxy, label), "the exchange's line")
        assert proxy.stop(signal.SIGINT) == 0, proxy.output()
        output = proxy.output()
        assert "PASSED" in output.splitlines()[-1] and "1 exchange in" in output.splitlines()[-1]
        assert "written: " in output
        suite = ET.parse(proxy.files["xml"]).getroot().find("testsuite")
        assert suite is not None and suite.get("failures") == "0" and suite.get("errors") == "0"
        har = json.loads(proxy.files["har"].read_text())
        (entry,) = har["log"]["entries"]
        assert DOCUMENT_REDEMPTION["input_Password"] not in json.dumps(har)
        assert entry["response"]["status"] == 200
        assert "mpesa-atm proxy" in proxy.files["html"].read_text()


@pytest.mark.network
def test_an_answer_without_its_envelope_is_seen_as_it_happens_and_ends_with_exit_1(
    serve_app: Callable[[Any], str], proxies: Callable[..., Proxy]
) -> None:
    upstream = serve_app(answering(200, b"OK", [(b"content-type", b"text/plain")]))
    proxy = proxies("bank", upstream).ready()
    answer = httpx.post(f"{proxy.url}/token-generation", json=DOCUMENT_GENERATION, timeout=10)
    assert answer.content == b"OK" and answer.headers["x-mpesa-atm-violations"] == "json_envelope"
    wait_for(lambda: "VIOLATIONS json_envelope (upstream, failure)" in proxy.output(), "the exchange's line")
    assert proxy.stop(signal.SIGTERM) == 1, proxy.output()
    last = proxy.output().splitlines()[-1]
    assert last.startswith("mpesa-atm proxy bank: FAILED: 1 failure (json_envelope)")
    assert ET.parse(proxy.files["xml"]).getroot().find("testsuite").get("failures") == "1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["proxy", "bank"], "give the partner's base URL with --upstream URL"),
        (["proxy", "bank", "--upstream", "ftp://x"], "is not an http:// or https:// URL"),
        (
            ["proxy", "bank", "--upstream", "http://x", "--workers", "2", "--db", ":memory:"],
            "--db :memory: cannot be shared by several workers",
        ),
        (
            ["proxy", "ipg", "--upstream", "http://x", "--path", "token_generation=/g"],
            "no operation token_generation",
        ),
        (["proxy", "bank", "--upstream", "http://x", "--har", "/nowhere/x.har"], "--har /nowhere/x.har"),
    ],
)
def test_start_up_mistakes_are_one_line_and_exit_2(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MPESA_ATM_UPSTREAM", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1, err
