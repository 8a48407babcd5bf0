"""The proxy in process, in front of the mocks (through httpx.ASGITransport) or of small upstreams
written from the document: what the client gets, what the run finds, the journal and violations."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks import create_app
from mpesa_atm.mocks.records import LEDGER_TABLES
from mpesa_atm.proxy.app import VIOLATIONS_HEADER, ProxyApp
from mpesa_atm.proxy.factory import create_proxy
from mpesa_atm.proxy.findings import Exchange, Finding
from mpesa_atm.proxy.judge import Judge
from mpesa_atm.proxy.ledger import Ledger
from mpesa_atm.settings import Settings
from mpesa_atm.spec import OPERATION_PATHS
from tests.fixtures.mocks import (
    DOCUMENT_GENERATION,
    DOCUMENT_REDEMPTION,
    DOCUMENT_REVERSAL,
    FakeClock,
    Running,
)
from tests.fixtures.tokens import seed_token

UPSTREAM = "http://upstream.test"


class Proxied:
    """A proxy running in process: its client, the app (its run), and the lines it printed."""

    def __init__(self, app: ProxyApp, client: TestClient, lines: list[str]) -> None:
        self.app, self.client, self.lines = app, client, lines

    def post(self, operation: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(OPERATION_PATHS[operation], json=body, **kwargs)


@pytest.fixture
def proxy(
    settings: Settings, running: Running, judges: dict[str, Judge], tmp_path: Any
) -> Callable[..., Proxied]:
    """Starts a proxy of `role` in front of `upstream` (an ASGI app, or a URL reached over the network)."""

    def start(role: str, upstream: Any, *, errors: bool = False, **options: Any) -> Proxied:
        lines: list[str] = []
        chosen = settings.replace(db_path=str(tmp_path / f"proxy-{role}.sqlite3"), proxy_errors=errors)
        url = upstream if isinstance(upstream, str) else UPSTREAM
        transport = None if isinstance(upstream, str) else httpx.ASGITransport(app=upstream)
        app = create_proxy(
            role,
            chosen,
            upstream=url,
            judge=judges[role],
            out=lines.append,
            transport=transport,
            **options,  # type: ignore[arg-type]
        )
        client = running.client(running.start(app), base_url="http://proxy.test")
        return Proxied(app, client, lines)

    return start


class Mock:
    """One mock of a role, running in process: its app (the proxy's upstream) and a client of it."""

    def __init__(self, app: Any, client: TestClient) -> None:
        self.app, self.client = app, client


@pytest.fixture
def mock(settings: Settings, running: Running) -> Callable[[str], Mock]:
    """One mock of `role` (the other is not needed behind a proxy of one role): one app to build, not
    the three of the wired pair."""

    def start(role: str) -> Mock:
        app = running.start(create_app(role, settings))  # type: ignore[arg-type]
        return Mock(app, running.client(app, base_url=f"http://{role}.test"))

    return start


def answering(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> Callable[..., Any]:
    """An upstream that answers every call so, and counts the calls."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        app.calls += 1  # type: ignore[attr-defined]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    app.calls = 0  # type: ignore[attr-defined]
    return app


GENERATED = json.dumps(
    {
        "output_ResponseCode": "0",
        "output_ResponseDesc": "Success",
        "output_BankTransactionRef": "12345678123412341234123456789abc",
        "output_BankDateTime": "20190611 223210",
    }
).encode()


def test_a_correct_bank_through_the_proxy_gives_its_answers_and_no_failure(
    mock: Callable[[str], Mock], proxy: Callable[..., Proxied]
) -> None:
    proxied = proxy("bank", mock("bank").app)
    answer = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert answer.status_code == 200 and answer.json()["output_ResponseCode"] == "0"
    assert VIOLATIONS_HEADER.lower() not in answer.headers
    assert len(proxied.lines) == 1 and " bank POST /token-generation 200 0 " in proxied.lines[0]
    assert "VIOLATIONS" not in proxied.lines[0]
    result = proxied.app.run.finish()
    assert result.exit_code == 0 and result.findings == []
    assert result.verdict("json_envelope").status == "passed"


def test_a_correct_ipg_through_the_proxy_gives_no_failure(
    mock: Callable[[str], Mock], proxy: Callable[..., Proxied]
) -> None:
    ipg = mock("ipg")
    seed_token(ipg.client)
    proxied = proxy("ipg", ipg.app)
    assert proxied.post("token_redemption", DOCUMENT_REDEMPTION).json()["output_ResponseCode"] == "0"
    reversal = {**DOCUMENT_REVERSAL, "input_ThirdPartyReference": "second-reference"}
    assert proxied.post("token_reversal", reversal).json()["output_ResponseCode"] == "0"
    result = proxied.app.run.finish()
    assert result.exit_code == 0 and result.findings == [], result.findings
    assert result.verdict("third_party_reference_echoed").cases == 2


def test_the_upstreams_answer_goes_through_unchanged_less_hop_by_hop_headers(
    proxy: Callable[..., Proxied],
) -> None:
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"x-partner-trace", b"abc"),
        (b"keep-alive", b"timeout=5"),
    ]
    proxied = proxy("bank", answering(200, GENERATED, headers))
    answer = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert answer.status_code == 200 and answer.content == GENERATED
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.headers["x-partner-trace"] == "abc"
    assert "keep-alive" not in answer.headers


def test_an_answer_without_its_envelope_is_marked_on_the_answer_and_the_line_and_fails_the_run(
    proxy: Callable[..., Proxied],
) -> None:
    proxied = proxy("bank", answering(200, b"OK", [(b"content-type", b"text/plain")]))
    answer = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert answer.status_code == 200 and answer.content == b"OK"  # passed on, marked
    assert answer.headers[VIOLATIONS_HEADER] == "json_envelope"
    assert proxied.lines[0].endswith("VIOLATIONS json_envelope (upstream, failure)")
    result = proxied.app.run.finish()
    assert result.exit_code == 1
    assert [(f.check, f.phase, f.severity) for f in result.findings] == [
        ("json_envelope", "upstream", "failure")
    ]
    assert result.findings[0].reproduce[0].startswith(f"curl -sS -X POST {UPSTREAM}/token-generation")


def test_with_errors_an_invalid_request_is_refused_400_and_never_forwarded(
    mock: Callable[[str], Mock], proxy: Callable[..., Proxied]
) -> None:
    bank = mock("bank")
    proxied = proxy("bank", bank.app, errors=True)
    request = {k: v for k, v in DOCUMENT_GENERATION.items() if k != "input_TransactionID"}
    answer = proxied.post("token_generation", request)
    assert answer.status_code == 400
    envelope = answer.json()
    assert envelope["output_ResponseCode"] == "-1"
    assert "request_schema_conformance" in envelope["output_ResponseDesc"]
    assert len(envelope["output_BankTransactionRef"]) == 32
    assert answer.headers[VIOLATIONS_HEADER] == "request_schema_conformance"
    assert bank.client.get("/_harness/journal").json()["entries"] == []  # the upstream never saw it
    assert proxied.app.run.finish().exit_code == 1


def test_with_errors_an_answer_that_breaks_the_document_is_replaced_by_a_502(
    proxy: Callable[..., Proxied],
) -> None:
    upstream = answering(200, b"OK", [(b"content-type", b"text/plain")])
    proxied = proxy("bank", upstream, errors=True)
    answer = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert answer.status_code == 502
    assert (
        answer.json()["output_ResponseCode"] == "-1"
        and "json_envelope" in answer.json()["output_ResponseDesc"]
    )
    assert upstream.calls == 1  # type: ignore[attr-defined]


def test_an_upstream_down_is_a_502_in_the_envelope_and_a_finding(
    refused_url: str, proxy: Callable[..., Proxied]
) -> None:
    proxied = proxy("ipg", refused_url)
    answer = proxied.post("token_redemption", DOCUMENT_REDEMPTION)
    assert answer.status_code == 502
    envelope = answer.json()
    assert envelope["output_ResponseCode"] == "-7" and "connection refused" in envelope["output_ResponseDesc"]
    assert envelope["output_ThirdPartyReference"] == DOCUMENT_REDEMPTION["input_ThirdPartyReference"]
    assert answer.headers[VIOLATIONS_HEADER] == "not_a_server_error"
    (entry,) = proxied.client.get("/_harness/journal").json()["entries"]
    assert entry["status"] == 502 and entry["upstream_status"] is None


def test_what_is_not_an_operation_of_the_role_is_404_in_the_envelope(proxy: Callable[..., Proxied]) -> None:
    proxied = proxy("bank", answering(200, GENERATED, []))
    answer = proxied.client.post("/token-redemption", json=DOCUMENT_REDEMPTION)
    assert answer.status_code == 404 and answer.json()["output_ResponseCode"] == "-1"
    assert proxied.client.get("/token-generation").status_code == 405
    assert proxied.lines == []


def test_the_journal_and_violations_mask_passwords_by_name_and_by_value(
    proxy: Callable[..., Proxied],
) -> None:
    # No envelope, the password echoed: json_envelope's finding quotes the answer.
    echoed = json.dumps({"output_ResponseCode": 0, "echo": DOCUMENT_REDEMPTION["input_Password"]})
    proxied = proxy("ipg", answering(200, echoed.encode(), [(b"content-type", b"application/json")]))
    proxied.post("token_redemption", DOCUMENT_REDEMPTION)
    journal = proxied.client.get("/_harness/journal").json()["entries"]
    violations = proxied.client.get("/_harness/violations").json()["violations"]
    assert journal[0]["request"]["input_Password"] != DOCUMENT_REDEMPTION["input_Password"]
    assert [v["check"] for v in violations] == ["json_envelope"]
    assert "HTTP 200 {" in violations[0]["message"]  # the answer quoted, its password masked
    assert violations[0]["exchange_ids"] == [journal[0]["exchange_id"]]
    for shown in (journal, violations, proxied.app.run.finish().findings):
        assert DOCUMENT_REDEMPTION["input_Password"] not in json.dumps(shown, default=repr)


def test_the_ledgers_findings_are_marked_and_counted(
    mock: Callable[[str], Mock], proxy: Callable[..., Proxied]
) -> None:
    class StandIn:  # a stand-in with the ledger's interface: every repeat of a call is a new reference
        def __init__(self, storage: Any, settings: Settings) -> None:
            self.seen: list[Exchange] = []

        async def observe(self, exchange: Exchange) -> tuple[Finding, ...]:
            self.seen.append(exchange)
            if len(self.seen) < 2:
                return ()
            ids = tuple(e.exchange_id for e in self.seen)
            return (
                Finding(
                    "duplicate", "replay_is_duplicate", "upstream", "A repeat got a new reference", "", ids
                ),
            )

    proxied = proxy("bank", mock("bank").app, ledger_of=StandIn)
    proxied.post("token_generation", DOCUMENT_GENERATION)
    second = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert second.headers[VIOLATIONS_HEADER] == "replay_is_duplicate"
    observed = proxied.app.ledger.seen  # type: ignore[union-attr]
    assert [e.status for e in observed] == [200, 200] and observed[0].request == DOCUMENT_GENERATION
    assert observed[0].answer is not None and observed[0].role == "bank"
    result = proxied.app.run.finish()
    assert [f.check for f in result.failures] == ["replay_is_duplicate"]


def test_a_proxy_nothing_went_through_is_not_tested(proxy: Callable[..., Proxied]) -> None:
    proxied = proxy("bank", answering(200, GENERATED, []))
    result = proxied.app.run.finish()
    assert result.exit_code == 2 and "nothing went through the proxy" in (result.untested or "")


@pytest.mark.network
def test_an_upstream_that_answers_too_late_is_a_502_with_request_time_out(
    serve_app: Callable[[Any], str], proxy: Callable[..., Proxied]
) -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(1)
            await answering(200, GENERATED, [])(scope, receive, send)

    proxied = proxy("bank", serve_app(slow), timeout=0.3)
    answer = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert answer.status_code == 502
    assert answer.json()["output_ResponseCode"] == "-6", answer.json()  # the call may have happened
    assert "no answer within 0.3 s" in answer.json()["output_ResponseDesc"]


def test_an_ipg_that_pays_a_token_twice_is_seen_by_the_ledger_as_it_happens(
    proxy: Callable[..., Proxied],
) -> None:

    async def pays_every_time(scope: Scope, receive: Receive, send: Send) -> None:
        """An iPG written from the document that forgets what it paid: every redemption is 0."""
        if scope["type"] != "http":
            return
        request = json.loads((await receive())["body"])
        answer = {
            "output_ResponseCode": "0",
            "output_ResponseDesc": "Success",
            "output_InsightReference": uuid.uuid4().hex[:19],
            "output_ThirdPartyReference": request["input_ThirdPartyReference"],
            "output_TransactionID": "BVA12369A",
        }
        await answering(200, json.dumps(answer).encode(), [(b"content-type", b"application/json")])(
            scope, receive, send
        )

    proxied = proxy("ipg", pays_every_time, ledger_of=Ledger)
    first = proxied.post("token_redemption", DOCUMENT_REDEMPTION)
    again = proxied.post(
        "token_redemption", {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "another-call"}
    )
    assert first.json()["output_ResponseCode"] == again.json()["output_ResponseCode"] == "0"
    assert "token_lifecycle" not in first.headers.get(VIOLATIONS_HEADER, "")
    assert "token_lifecycle" in again.headers[VIOLATIONS_HEADER]
    assert "token_lifecycle (upstream, failure)" in proxied.lines[1]
    result = proxied.app.run.finish()
    assert result.exit_code == 1 and "token_lifecycle" in {f.check for f in result.failures}


@pytest.mark.parametrize("strict", [False, True])
def test_a_warning_fails_the_run_and_is_refused_with_errors_only_when_strict(
    strict: bool, proxy: Callable[..., Proxied]
) -> None:
    upstream = answering(200, GENERATED, [(b"content-type", b"application/json")])
    proxied = proxy("bank", upstream, errors=True, strict=strict)
    body = json.dumps(DOCUMENT_GENERATION).encode()
    answer = proxied.client.post("/token-generation", content=body, headers={"content-type": "text/plain"})
    # A warning (formats) of the client's; forwarded, the upstream's 0 to it is a warning too.
    marked = "request_schema_conformance" + ("" if strict else ", invalid_request_not_success")
    assert answer.headers[VIOLATIONS_HEADER] == marked
    assert answer.status_code == (400 if strict else 200)
    assert upstream.calls == (0 if strict else 1)  # type: ignore[attr-defined]
    result = proxied.app.run.finish()
    assert {f.severity for f in result.findings} == {"warning"}
    assert result.exit_code == (1 if strict else 0)


def test_a_bank_that_answers_a_repeat_with_a_new_reference_is_seen_by_the_ledger(
    proxy: Callable[..., Proxied],
) -> None:

    async def new_every_time(scope: Scope, receive: Receive, send: Send) -> None:
        """A bank written from the document that forgets its calls: a repeat gets a new token."""
        if scope["type"] != "http":
            return
        answer = {**json.loads(GENERATED), "output_BankTransactionRef": uuid.uuid4().hex}
        await answering(200, json.dumps(answer).encode(), [(b"content-type", b"application/json")])(
            scope, receive, send
        )

    proxied = proxy("bank", new_every_time, ledger_of=Ledger)
    assert VIOLATIONS_HEADER.lower() not in proxied.post("token_generation", DOCUMENT_GENERATION).headers
    repeat = proxied.post("token_generation", DOCUMENT_GENERATION)
    assert repeat.headers[VIOLATIONS_HEADER] == "replay_is_duplicate"
    assert proxied.lines[1].endswith("VIOLATIONS replay_is_duplicate (upstream, failure)")
    assert proxied.app.run.finish().exit_code == 1


def test_the_ledgers_rows_are_pruned_past_the_retention_while_the_proxy_runs(
    mock: Callable[[str], Mock], proxy: Callable[..., Proxied], running: Running, clock: FakeClock
) -> None:
    proxied = proxy("bank", mock("bank").app, ledger_of=Ledger)
    assert proxied.post("token_generation", DOCUMENT_GENERATION).json()["output_ResponseCode"] == "0"
    pruning = proxied.app.pruning
    assert pruning is not None and pruning.tables == LEDGER_TABLES
    assert running.portal.call(pruning.prune) == 0  # within the retention: kept
    clock.advance(days=proxied.app.settings.retention.days + 1)
    assert running.portal.call(pruning.prune) >= 1  # the generation's rows, past it


@pytest.mark.parametrize("view", ["/_harness/journal", "/_harness/violations"])
def test_a_view_the_store_cannot_give_now_is_503_in_json_never_a_500(
    mock: Callable[[str], Mock], proxy: Callable[..., Proxied], monkeypatch: pytest.MonkeyPatch, view: str
) -> None:
    proxied = proxy("bank", mock("bank").app)
    assert proxied.post("token_generation", DOCUMENT_GENERATION).status_code == 200

    async def busy(*args: Any, **kwargs: Any) -> list[Any]:
        raise StoreBusy("the journal's lock is held by another process")

    monkeypatch.setattr(proxied.app.store, "journal", busy)
    answer = proxied.client.get(view)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "the journal's lock is held" in answer.json()["detail"]
    monkeypatch.undo()
    assert proxied.client.get(view).status_code == 200
