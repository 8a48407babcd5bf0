"""Faults that need a real socket: reset, empty answer, malformed body, hang; `times: 1` across two
workers; the bank's reversal when a redemption's answer is lost; and what the journal shows of a
broken call (what the client got, and the answer withheld)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.mocks import DOCUMENT_REDEMPTION
from tests.fixtures.servers import wait_for
from tests.fixtures.tokens import post_redemption, redeem, seed_token

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def both(serve_for_module, tmp_path_factory):
    # A hang lets go after 1 s (past the 0.5 s the tests' clients wait for it), so that the test that
    # made it sees it end, rather than the next test's journal or the server's stop.
    config = tmp_path_factory.mktemp("config") / "mpesa-atm.toml"
    config.write_text("hang_seconds = 1\n")
    return serve_for_module("--config", str(config))


@pytest.fixture
def served(both):
    for url in both.urls.values():
        httpx.post(f"{url}/_harness/reset").raise_for_status()
        # A limit no test reaches: the calls under way are counted, and the teardown sees them end.
        httpx.put(f"{url}/_harness/modes", json={"max_concurrency": 100_000}).raise_for_status()
    seed_token(both.ipg_url)
    yield both
    for role in both.urls:
        wait_for(lambda: both.calls_under_way(role) == 0, f"the {role} mock's calls to end")  # noqa: B023


def add_fault(url, **rule):
    response = httpx.post(f"{url}/_harness/faults", json=rule)
    assert response.status_code == 201, response.text


def test_connection_reset_is_seen_by_the_client_and_the_server_keeps_serving(served):
    add_fault(served.ipg_url, operation="token-redemption", connection="reset", times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post_redemption(served.ipg_url)
    assert redeem(served.ipg_url)["output_ResponseCode"] == "0"  # not processed: still unspent


def test_empty_response_closes_without_an_answer(served):
    with pytest.raises(httpx.RemoteProtocolError):
        post_redemption(served.ipg_url, input_CustomerMSISDN="243900000011")  # magic: empty
    assert redeem(served.ipg_url)["output_ResponseCode"] == "0"


def test_malformed_response_is_a_200_whose_json_stops_half_way(served):
    add_fault(served.ipg_url, connection="malformed", times=1)
    response = post_redemption(served.ipg_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        response.json()


def test_hang_outlasts_the_client_timeout(served):
    add_fault(served.ipg_url, connection="hang", times=1)
    with pytest.raises(httpx.ReadTimeout):
        post_redemption(served.ipg_url, timeout=0.5)


def test_processed_reset_commits_the_redemption_and_loses_its_answer(served):
    add_fault(served.ipg_url, connection="reset", processed=True, times=1)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post_redemption(served.ipg_url)
    assert redeem(served.ipg_url)["output_ResponseCode"] == "-3"  # it was made


def test_rule_with_times_one_fires_exactly_once_across_two_workers(serve):
    served = serve("--workers", "2", role="bank")
    url = served.urls["bank"]
    add_fault(url, response_code="-7", times=1)

    def generate(i):
        body = {
            "input_CustomerMSISDN": "243843330333",
            "input_Amount": "200",
            "input_Currency": "CDF",
            "input_TransactionID": f"TX{i}",
        }
        return httpx.post(f"{url}/token-generation", json=body, timeout=10).json()["output_ResponseCode"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(generate, range(40)))
    assert codes.count("-7") == 1
    assert codes.count("0") == 39


def test_bank_reverses_when_the_redemption_answer_is_lost(served):
    withdrawal = httpx.post(
        f"{served.ipg_url}/_harness/withdrawals",
        json={"msisdn": "243843330333", "amount": "200", "currency": "CDF"},
    ).json()
    add_fault(served.ipg_url, operation="token-redemption", connection="reset", processed=True, times=1)
    response = httpx.post(
        f"{served.bank_url}/_harness/redemptions",
        json={"bank_transaction_ref": withdrawal["bank_transaction_ref"], "timeout_ms": 2000},
        timeout=10,
    )
    assert response.status_code == 502
    outcome = response.json()
    assert outcome["reversal"]["ipg_response"]["output_ResponseCode"] == "0"
    assert outcome["reversal"]["request"]["input_TransactionID"] == withdrawal["transaction_id"]
    # The bank's journal shows the whole sequence: the redemption without an answer, then the reversal.
    sent = httpx.get(f"{served.bank_url}/_harness/journal").json()["entries"]
    assert [(e["direction"], e["operation"], e["status"]) for e in sent[:2]] == [
        ("outbound", "token_reversal", 200),
        ("outbound", "token_redemption", None),
    ]
    # The iPG redeemed, then reversed the token: it is spent.
    received = httpx.get(f"{served.ipg_url}/_harness/journal").json()["entries"]
    assert [e["response"]["output_ResponseCode"] for e in received[:1]] == ["0"]


def test_bank_reverses_when_the_redemption_times_out(served):
    withdrawal = httpx.post(
        f"{served.ipg_url}/_harness/withdrawals",
        json={"msisdn": "243843330333", "amount": "200", "currency": "CDF"},
    ).json()
    add_fault(served.ipg_url, operation="token-redemption", connection="hang", times=1)
    response = httpx.post(
        f"{served.bank_url}/_harness/redemptions",
        json={"bank_transaction_ref": withdrawal["bank_transaction_ref"], "timeout_ms": 500},
        timeout=10,
    )
    assert response.status_code == 502
    assert "did not answer within 0.5 s" in response.json()["detail"]
    assert response.json()["reversal"]["ipg_response"]["output_ResponseCode"] == "0"


def test_calls_beyond_the_concurrency_limit_are_system_too_busy(serve):
    # A server of its own: a hang left by another test would count as a call under way.
    served = serve(role="ipg")
    seed_token(served.ipg_url)
    httpx.put(f"{served.ipg_url}/_harness/modes", json={"max_concurrency": 1}).raise_for_status()
    add_fault(served.ipg_url, operation="token-redemption", delay_ms=3000, times=1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(redeem, served.ipg_url)
        wait_for(lambda: served.calls_under_way("ipg") == 1, "the slow call under way")
        busy = redeem(served.ipg_url, input_ThirdPartyReference="second")
        assert busy["output_ResponseCode"] == "-7"
        assert slow.result()["output_ResponseCode"] == "0"
    assert served.calls_under_way("ipg") == 0


def _workers_holding(served, path: str) -> int:
    """How many of `served`'s processes have `path` open."""
    count = 0
    for process in psutil.Process(served.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            count += any(opened.path == path for opened in process.open_files())
    return count


def test_the_concurrency_limit_holds_across_the_workers_of_a_mock(serve):
    served = serve("--workers", "2", role="ipg")
    # A worker that starts forgets the calls counted (docs/mocks.md: those of a worker that died): both
    # workers have opened the store, so that neither starts while the calls below are under way.
    lock = str(Path(f"{served.db_path}.lock").resolve())
    wait_for(lambda: _workers_holding(served, lock) >= 2, "both workers to open the store", timeout=30)
    httpx.put(f"{served.ipg_url}/_harness/modes", json={"max_concurrency": 3}).raise_for_status()
    add_fault(served.ipg_url, delay_ms=3000)  # every call, until reset: the first three stay under way
    start = threading.Barrier(10)

    def call(number):
        start.wait()
        return redeem(served.ipg_url, timeout=15, input_ThirdPartyReference=f"call-{number}")[
            "output_ResponseCode"
        ]

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(call, range(10)))
    assert 1 <= sum(code != "-7" for code in codes) <= 3, codes
    assert served.calls_under_way("ipg") == 0


MAGIC = {
    "reset": "243900000010",
    "empty": "243900000011",
    "malformed": "243900000012",
    "hang": "243900000013",
}


def _expect_broken(kind, call):
    if kind == "malformed":
        response = call()
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
    elif kind == "hang":
        with pytest.raises(httpx.ReadTimeout):
            call()
    else:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            call()


@pytest.mark.parametrize("kind", sorted(MAGIC))
@pytest.mark.parametrize("trigger", ["rule", "header", "magic"])
def test_each_connection_fault_by_each_trigger(served, kind, trigger):
    url = served.ipg_url
    body = dict(DOCUMENT_REDEMPTION)
    headers = {}
    if trigger == "rule":
        add_fault(url, connection=kind, times=1)
    elif trigger == "header":
        headers["X-Mpesa-Atm-Fault"] = f"connection={kind}"
    else:
        body["input_CustomerMSISDN"] = MAGIC[kind]
    _expect_broken(
        kind, lambda: httpx.post(f"{url}/token-redemption", json=body, headers=headers, timeout=0.5)
    )
    # The next call is answered normally: the fault was for that call only.
    assert redeem(url)["output_ResponseCode"] == "0"


@pytest.mark.parametrize("trigger", ["rule", "header", "magic"])
def test_delay_by_each_trigger(served, trigger):
    url = served.ipg_url
    body = dict(DOCUMENT_REDEMPTION)
    headers = {}
    if trigger == "rule":
        add_fault(url, delay_ms=2000, times=1)
    elif trigger == "header":
        headers["X-Mpesa-Atm-Fault"] = "delay_ms=2000"
    else:
        body["input_CustomerMSISDN"] = "243900000014"
    started = time.monotonic()
    response = httpx.post(f"{url}/token-redemption", json=body, headers=headers, timeout=10)
    assert time.monotonic() - started >= 2.0
    # Answered by the rules after the wait (the magic MSISDN is not the token's: -1).
    assert response.json()["output_ResponseCode"] == ("-1" if trigger == "magic" else "0")


@pytest.mark.parametrize("kind", ["reset", "empty", "malformed"])
def test_the_journal_shows_what_a_broken_call_sent_and_the_answer_it_withheld(served, kind):
    url = served.ipg_url
    headers = {"X-Mpesa-Atm-Fault": f"connection={kind}; processed=true"}
    _expect_broken(
        kind,
        lambda: httpx.post(f"{url}/token-redemption", json=DOCUMENT_REDEMPTION, headers=headers, timeout=5),
    )
    (entry,) = httpx.get(f"{url}/_harness/journal").json()["entries"]
    assert entry["status"] == (200 if kind == "malformed" else None)  # None: no status line left
    assert entry["response"]["connection_fault"] == kind
    if kind == "malformed":
        assert entry["response"]["sent"] == '{"output_ResponseCode": "0", "output_Respon'
    else:
        assert entry["response"]["sent"] is None
    # processed: the redemption was made, and its answer is kept for the reader of the journal.
    assert entry["response"]["withheld"]["output_ResponseCode"] == "0"
    assert redeem(url)["output_ResponseCode"] == "-3"
