"""Proxies as processes sharing a store: a bank proxy and an iPG proxy on one --db in front of
`mpesa-atm serve`'s mocks, a redemption held to the generation the other proxy saw; and one proxy with
--workers 2, a request and its repeat answered by different workers, judged across them, its evidence
at the end counting both workers' exchanges."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpesa_atm.mocks import create_app
from mpesa_atm.proxy.app import VIOLATIONS_HEADER
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import DOCUMENT_GENERATION
from tests.fixtures.servers import Served, wait_for
from tests.fixtures.tokens import post_redemption, seed_token
from tests.proxy.processes import Proxy
from tests.proxy.test_app import GENERATED, answering

_READY = re.compile(r"^  worker (\d+) ready$", re.MULTILINE)
_OTHER_MSISDN = "243843330999"


def _said(proxy: Proxy, text: str) -> None:
    wait_for(functools.partial(lambda p, t: t in p.output(), proxy, text), repr(text), timeout=20)


@pytest.mark.network
@pytest.mark.parametrize("msisdn", [DOCUMENT_GENERATION["input_CustomerMSISDN"], _OTHER_MSISDN])
def test_a_redemption_through_the_ipg_proxy_is_held_to_the_generation_the_bank_proxy_saw(
    serve: Callable[..., Served], proxies: Callable[..., Proxy], tmp_path: Path, msisdn: str
) -> None:
    served = serve()
    shared = str(tmp_path / "proxies.sqlite3")  # the two proxies' one store
    bank = proxies("bank", served.bank_url, "--db", shared)
    ipg = proxies("ipg", served.ipg_url, "--db", shared)
    bank.ready(), ipg.ready()
    generated = httpx.post(f"{bank.url}/token-generation", json=DOCUMENT_GENERATION, timeout=10)
    assert generated.json()["output_ResponseCode"] == "0", generated.text
    reference = generated.json()["output_BankTransactionRef"]
    # The iPG mock learns the token with the MSISDN it will pay: another one is an iPG that pays a
    # token for other details than its generation's, which only the bank proxy saw.
    seed_token(served.ipg_url, bank_transaction_ref=reference, msisdn=msisdn)
    redeemed = post_redemption(
        ipg.url, input_BankTransactionRef=reference, input_CustomerMSISDN=msisdn, timeout=10
    )
    assert redeemed.json()["output_ResponseCode"] == "0", redeemed.text
    paid_for_other_details = msisdn != DOCUMENT_GENERATION["input_CustomerMSISDN"]
    if paid_for_other_details:
        assert redeemed.headers[VIOLATIONS_HEADER] == "token_lifecycle"
        _said(ipg, "ipg POST /token-redemption 200 0 ")
        assert "VIOLATIONS token_lifecycle (upstream, failure)" in ipg.output()
    else:
        assert VIOLATIONS_HEADER not in redeemed.headers
        _said(ipg, "ipg POST /token-redemption 200 0 ")
    _said(bank, "bank POST /token-generation 200 0 ")
    assert bank.stop(signal.SIGINT) == 0, bank.output()
    assert ipg.stop(signal.SIGINT) == (1 if paid_for_other_details else 0), ipg.output()
    last = ipg.output().splitlines()[-1]
    if paid_for_other_details:
        assert last.startswith("mpesa-atm proxy ipg: FAILED: 1 failure (token_lifecycle)"), last
        assert "input_CustomerMSISDN" in ipg.files["html"].read_text()
    else:
        assert "PASSED" in last and "1 exchange in" in last, last


def _workers(proxy: Proxy) -> list[int]:
    """The pids of the proxy's workers, once each says it is ready."""
    wait_for(lambda: len(_READY.findall(proxy.output())) >= 2, "two workers ready", timeout=60)
    return [int(pid) for pid in _READY.findall(proxy.output())]


def _through(
    proxy: Proxy, stopped: int, method: str = "POST", path: str = "/token-generation"
) -> httpx.Response:
    """A call (by default the document's generation) while worker `stopped` cannot accept: the other
    answers it (one listening socket, one queue of connections, taken by whichever worker calls
    accept). Stopped for less than uvicorn's health check waits, so it is not replaced."""
    os.kill(stopped, signal.SIGSTOP)
    try:
        body = DOCUMENT_GENERATION if method == "POST" else None
        return httpx.request(
            method, f"{proxy.url}{path}", json=body, headers={"Connection": "close"}, timeout=10
        )
    finally:
        os.kill(stopped, signal.SIGCONT)


def _view(proxy: Proxy, stopped: int, path: str) -> Any:
    """A view of the proxy answered by the worker not `stopped`. The stopped one may have been
    stopped while it held the journal's lock (appending its last exchange): the other then answers
    503 with Retry-After once its wait is over, and the view is asked again with both running."""
    for _ in range(5):
        answer = _through(proxy, stopped, "GET", path)
        if answer.status_code != 503:
            break
        assert answer.headers["retry-after"] == "1" and "store" in answer.json()["detail"]
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _violations(proxy: Proxy, stopped: int) -> list[Any]:
    """The violations a worker not `stopped` shows, asked again until there are some, as a client
    asks: an exchange is journalled after its answer has left (docs/proxy.md), and the write of the
    last one may still wait for the journal's lock that the other worker held when it was stopped."""
    shown: list[Any] = []

    def some() -> list[Any]:
        shown[:] = _view(proxy, stopped, "/_harness/violations")["violations"]
        return shown

    wait_for(some, "a violation shown", timeout=10)
    return shown


@pytest.mark.network
@pytest.mark.parametrize(
    ("upstream", "stop"),
    [("bank mock", signal.SIGTERM), ("a bank answering a repeat 0", signal.SIGINT)],
)
def test_two_workers_judge_a_repeat_across_each_other_and_the_evidence_counts_both(
    settings: Settings,
    serve_app: Callable[[Any], str],
    proxies: Callable[..., Proxy],
    upstream: str,
    stop: signal.Signals,
) -> None:
    if upstream == "bank mock":
        app = create_app("bank", settings)
    else:  # every call answered 0 with the same reference: a repeat is not told it is one
        app = answering(200, GENERATED, [(b"content-type", b"application/json")])
    proxy = proxies("bank", serve_app(app), "--workers", "2").ready()
    first, second = _workers(proxy)
    answers = [_through(proxy, stopped=second), _through(proxy, stopped=first)]  # first's, second's
    broken = upstream != "bank mock"
    assert [a.json()["output_ResponseCode"] for a in answers] == (["0", "0"] if broken else ["0", "-3"])
    assert VIOLATIONS_HEADER not in answers[0].headers
    if broken:  # the repeat, judged by the second worker with the first worker's exchange
        assert answers[1].headers[VIOLATIONS_HEADER] == "replay_is_duplicate"
        for stopped in (first, second):  # either worker shows it, from the store
            (violation,) = _violations(proxy, stopped)
            assert violation["check"] == "replay_is_duplicate" and len(violation["exchange_ids"]) == 2
            assert violation["reproduce"].startswith("curl ")
    else:
        assert VIOLATIONS_HEADER not in answers[1].headers
    wait_for(lambda: proxy.output().count("bank POST /token-generation 200 ") == 2, "the two lines")
    assert proxy.stop(stop) == (1 if broken else 0), proxy.output()
    output = proxy.output()
    last = output.splitlines()[-1]
    assert "2 exchanges in" in last, last
    assert "handed no exchange over" not in output
    har = json.loads(proxy.files["har"].read_text())
    assert len(har["log"]["entries"]) == 2  # each worker's exchange, itself
    suite = ET.parse(proxy.files["xml"]).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == ("1" if broken else "0")
    if broken:
        assert last.startswith("mpesa-atm proxy bank: FAILED: 1 failure (replay_is_duplicate)"), last
