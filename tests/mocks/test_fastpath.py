"""The fast path (mocks/fastpath.py) answers exactly as connexion's path does.

Each request goes, in the same order, to a mock on the fast path and to one with
`validate_responses` (connexion's path, answers checked against the document), each on its own
store and the same clock; the two answers must be the same: status, headers and body, the fresh
references aside (each is named by the order it first appeared in, so a duplicate must still carry
the first call's). The requests: the hostile corpus of tests/reliability for each operation, the
rules' outcomes, faults by header, rule, mode and magic MSISDN, and what a fuzz campaign sent.
The journals must then hold the same entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from connexion.middleware.routing import RoutingMiddleware
from starlette.testclient import TestClient

from mpesa_atm.fuzz import RequestSent, Target, run_campaign
from mpesa_atm.mocks import create_app
from mpesa_atm.mocks import ipg as ipg_rules
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import (
    DOCUMENT_GENERATION,
    DOCUMENT_REDEMPTION,
    DOCUMENT_REVERSAL,
    DOCUMENT_TOKEN,
    Running,
)
from tests.fuzz.conftest import DOCUMENT_CREDENTIALS
from tests.reliability.test_hostile_input import CORPUS

JSON = {"Content-Type": "application/json"}
FRESH = ("output_BankTransactionRef", "output_InsightReference")
OPERATIONS = {
    "bank": {"/token-generation": DOCUMENT_GENERATION},
    "ipg": {"/token-redemption": DOCUMENT_REDEMPTION, "/token-reversal": DOCUMENT_REVERSAL},
}
FAST_MARK = "x-test-path"  # which of the two mocks a request went to, for the routing spy


@dataclass
class Call:
    method: str
    path: str
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    raw_headers: list[tuple[bytes, bytes]] | None = None  # instead of `headers`: repeated names

    @classmethod
    def post(cls, path: str, body: dict[str, Any], **headers: str) -> Call:
        return cls("POST", path, json.dumps(body).encode(), {**JSON, **headers})


Client = TestClient | httpx.Client


class Twins:
    """The same role twice: on the fast path and on connexion's, in process or served (`serve`)."""

    def __init__(
        self, role: str, settings: Settings, running: Running, serve: Callable[[Any], str] | None = None
    ) -> None:
        self.role = role
        self.clients: dict[str, Client] = {}
        for name, changes in (("fast", {}), ("connexion", {"validate_responses": True})):
            app = create_app(role, settings.replace(db_path=f"{settings.db_path}.{name}", **changes))
            if serve is None:
                self.clients[name] = running.client(running.start(app), base_url=f"http://{role}.test")
            else:
                self.clients[name] = httpx.Client(base_url=serve(app), timeout=10)
        self.references: dict[str, dict[str, str]] = {name: {} for name in self.clients}
        self.compared = 0

    def control(self, method: str, path: str, body: Any = None) -> None:
        for client in self.clients.values():
            response = client.request(method, f"/_harness{path}", json=body)
            assert response.status_code < 300, response.text

    def send(self, call: Call) -> None:
        """Sends `call` to both and requires the same answer."""
        answers = {name: self._answer(name, call) for name in self.clients}
        assert answers["fast"] == answers["connexion"], (call.method, call.path, call.content[:200])
        self.compared += 1

    def _answer(self, name: str, call: Call) -> Any:
        client = self.clients[name]
        headers: Any = {**call.headers, FAST_MARK: name}
        if call.raw_headers is not None:
            headers = [*call.raw_headers, (FAST_MARK.encode(), name.encode())]
        try:
            response = client.request(call.method, call.path, content=call.content, headers=headers)
        except (ConnectionError, AssertionError, httpx.TransportError) as exc:  # a connection fault
            return type(exc).__name__
        base = str(client.base_url).rstrip("/")  # in a redirect's location: each server's own port
        headers = [(k, v.replace(base, "")) for k, v in response.headers.items() if k != "date"]
        return response.status_code, headers, self._body(name, response.content)

    def _body(self, name: str, content: bytes) -> Any:
        try:
            answer = json.loads(content)
        except ValueError:
            return content
        if isinstance(answer, dict):
            seen = self.references[name]
            for key in FRESH:
                if isinstance(answer.get(key), str):
                    answer[key] = seen.setdefault(answer[key], f"reference {len(seen)}")
        return answer

    def journals(self) -> dict[str, list[Any]]:
        out = {}
        for name, client in self.clients.items():
            entries = client.get("/_harness/journal", params={"limit": 10_000}).json()["entries"]
            out[name] = [
                (
                    e["operation"],
                    e["method"],
                    e["url"],
                    e["status"],
                    e["request"],
                    self._mapped(name, e["response"]),
                )
                for e in entries
            ]
        return out

    def _mapped(self, name: str, response: Any) -> Any:
        """`response` with its references named (those no client saw, as a connection fault's
        withheld answer's, by the order the journals show them in)."""
        if isinstance(response, dict):
            seen = self.references[name]
            return {
                k: seen.setdefault(v, f"reference {len(seen)}") if k in FRESH else self._mapped(name, v)
                for k, v in response.items()
            }
        return response

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


@pytest.fixture
def twins(settings: Settings, running: Running) -> Iterator[Any]:
    made: list[Twins] = []

    def make(role: str, serve: Callable[[Any], str] | None = None, **changes: Any) -> Twins:
        made.append(Twins(role, settings.replace(**changes), running, serve))
        return made[-1]

    yield make
    for pair in made:
        pair.close()


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """(which mock, method, path) of every call that reached connexion's routing."""
    calls: list[tuple[str, str, str]] = []
    original = RoutingMiddleware.__call__

    async def spy(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            mark = dict(scope["headers"]).get(FAST_MARK.encode(), b"").decode()
            calls.append((mark, scope["method"], scope["path"]))
        await original(self, scope, receive, send)

    monkeypatch.setattr(RoutingMiddleware, "__call__", spy)
    return calls


def _hostile(role: str) -> Iterator[Call]:
    """The hostile corpus of tests/reliability, at each of the role's operations."""
    for path, example in OPERATIONS[role].items():
        for case in CORPUS:
            content = case.make(role)
            if path == "/token-reversal":  # the corpus is made of the redemption's example
                content = content.replace(
                    b'"input_Amount"', b'"input_TransactionID": "BVA12369A", "input_Amount"', 1
                )
            target = case.path.format(op=path, OP=path.upper())
            yield Call(case.method, target, content, dict(case.headers))
        yield Call.post(path, example)


# In process a connection that a fault resets or closes raises inside the app, which connexion's
# layers report otherwise than ours; over a socket nothing raises (test_connection_faults_alike).
BREAKING = ("243900000010", "243900000011", "connection=reset", "connection=empty")


def _variants(path: str, example: dict[str, str], *, breaking: bool = False) -> Iterator[Call]:
    """One operation's example, the same call again, and under every kind of fault a call can get
    (those that break the connection only with `breaking`)."""
    for call in _all_variants(path, example):
        if breaking or not any(
            word.encode() in call.content or word in call.headers.values() for word in BREAKING
        ):
            yield call


def _all_variants(path: str, example: dict[str, str]) -> Iterator[Call]:
    yield Call.post(path, example)
    yield Call.post(path, example)  # a duplicate (or a refused second use)
    yield Call.post(path, example, **{"Content-Type": "application/json; charset=utf-8"})
    yield Call.post(path, example, **{"Content-Type": "application/json;charset=UTF-8"})
    yield Call.post(path, example, **{"Content-Type": "application/json;charset=latin-1"})
    yield Call.post(path, example, **{"Content-Type": "application/json; charset=latin-1"})
    yield Call.post(path, example, **{"Content-Type": "application/json; charset=UTF-16"})
    yield Call.post(path, example, **{"Content-Type": "Application/JSON"})
    two_types = [(b"content-type", b"application/json"), (b"content-type", b"text/plain")]
    yield Call("POST", path, json.dumps(example).encode(), {}, two_types)
    yield Call("POST", path, json.dumps(example).encode(), {}, two_types[::-1])
    yield Call("POST", path, b" " + json.dumps(example).encode() + b"\n")
    yield Call("POST", path, b"{}")
    yield Call("POST", path + "?", json.dumps(example).encode())
    yield Call("POST", path + "/", json.dumps(example).encode())
    yield Call("HEAD", path)
    for n in range(1, 14):
        yield Call.post(path, {**example, "input_CustomerMSISDN": f"2439000000{n:02d}"})
    for fault in (
        "response_code=-7",
        "response_code=-2;description=told so",
        "delay_ms=1",
        "delay_ms=1;response_code=-6",
        "connection=reset",
        "connection=empty",
        "connection=malformed",
        "connection=malformed;processed=true",
        "connection=hang",
        "operation=token_reversal;response_code=-8",
        "operation=nothing;response_code=-8",
        "response_code=0",
        "response_code",
        "colour=blue",
    ):
        yield Call.post(
            path, {**example, "input_ThirdPartyReference": "F" + fault[:15]}, **{"X-Mpesa-Atm-Fault": fault}
        )


def test_the_bank_mock_answers_alike_on_both_paths(twins, routed):
    pair = twins("bank", hang_seconds=0.01)
    for call in _hostile("bank"):
        pair.send(call)
    for call in _variants("/token-generation", DOCUMENT_GENERATION):
        pair.send(call)
    other = {**DOCUMENT_GENERATION, "input_Amount": "300"}
    pair.send(Call.post("/token-generation", other))  # its TransactionID with other details: -1
    _faults_and_modes(pair, "/token-generation", DOCUMENT_GENERATION)
    journals = pair.journals()
    assert journals["fast"] == journals["connexion"]
    assert len(journals["fast"]) > 100
    _fast_path_was_taken(routed, pair)


def test_the_ipg_mock_answers_alike_on_both_paths(twins, routed, clock):
    pair = twins("ipg", hang_seconds=0.01)
    pair.control("POST", "/tokens", DOCUMENT_TOKEN)
    for call in _hostile("ipg"):
        pair.send(call)
    for index, (path, example) in enumerate(OPERATIONS["ipg"].items()):
        token = {**DOCUMENT_TOKEN, "bank_transaction_ref": f"{index}" * 32, "transaction_id": f"G2{index}"}
        pair.control("POST", "/tokens", token)
        mine = {**example, "input_BankTransactionRef": token["bank_transaction_ref"]}
        if "input_TransactionID" in mine:
            mine["input_TransactionID"] = token["transaction_id"]
        for call in _variants(path, mine):
            pair.send(call)
        for changes in (
            {"input_Password": "wrong"},  # -4
            {"input_Username": "nobody"},  # -4
            {"input_BankShortcode": "11111"},  # -5
            {"input_BankTransactionRef": "f" * 32},  # -9
            {"input_Amount": "300", "input_ThirdPartyReference": "other"},  # -1
            {"input_TransactionID": "OTHER", "input_ThirdPartyReference": "another"},  # -9 on a reversal
        ):
            pair.send(Call.post(path, {**mine, **changes}))
    clock.advance(days=3)  # the document's token, never used, is now out of the 2-day window: -9
    pair.send(Call.post("/token-redemption", {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "late"}))
    _faults_and_modes(pair, "/token-redemption", DOCUMENT_REDEMPTION)
    journals = pair.journals()
    assert journals["fast"] == journals["connexion"]
    _fast_path_was_taken(routed, pair)


def _faults_and_modes(pair: Twins, path: str, example: dict[str, str]) -> None:
    """Faults from the control API: a counted rule, a rule matching one field, offline, the limit."""
    operation = path.strip("/").replace("-", "_")

    def call(reference: str) -> Call:
        return Call.post(
            path, {**example, "input_ThirdPartyReference": reference, "input_TransactionID": reference}
        )

    pair.control("POST", "/faults", {"operation": operation, "response_code": "-7", "times": 2})
    pair.control("POST", "/faults", {"response_code": "-2", "match": {"input_Currency": "USD"}})
    for reference in ("R1", "R2", "R3"):
        pair.send(call(reference))
    pair.send(Call.post(path, {**example, "input_Currency": "USD"}))
    pair.control("PUT", "/modes", {"offline": True})
    pair.send(call("R4"))
    pair.control("PUT", "/modes", {"offline": False, "max_concurrency": 1, "magic_values": False})
    pair.send(call("R5"))
    pair.send(Call.post(path, {**example, "input_CustomerMSISDN": "243900000007"}))


def _fast_path_was_taken(routed: list[tuple[str, str, str]], pair: Twins) -> None:
    """The fast mock's well-formed API calls never reached connexion's routing; the other's all did."""
    api = {path for paths in OPERATIONS.values() for path in paths}
    fast = [(method, path) for mark, method, path in routed if mark == "fast" and path in api]
    slow = [(method, path) for mark, method, path in routed if mark == "connexion" and path in api]
    assert len(slow) > 100
    assert len(fast) < len(slow) / 3, fast  # only what the fast path leaves to connexion


def test_a_fuzz_campaign_gets_the_same_answers_from_both_paths(twins, settings, running):
    """What a campaign sends (generated cases, edges, probes), recorded once and sent to both."""
    recorded: list[Call] = []
    api = set(OPERATIONS["ipg"]) | set(OPERATIONS["bank"])

    def listener(event: Any) -> None:
        exchange = getattr(event, "exchange", None)
        if isinstance(event, RequestSent) and exchange is not None:
            path = exchange.url.split("://", 1)[-1].partition("/")[2]
            if "/" + path.partition("?")[0] in api:
                headers = {k: v for k, v in exchange.request_headers if k.lower() not in _HOP_HEADERS}
                recorded.append(Call(exchange.method, "/" + path, exchange.request_body, headers))

    for role, credentials in (("bank", None), ("ipg", DOCUMENT_CREDENTIALS)):
        recorded.clear()
        source_settings = settings.replace(db_path=f"{settings.db_path}.{role}-source")
        source = running.start(create_app(role, source_settings))
        # 10 examples: its edges and boundaries do not depend on it (a fast path that skipped the
        # schema for a body with a non-ASCII string was caught by a generated case at 10).
        run_campaign(
            Target(role, app=source, credentials=credentials), max_examples=10, seed=3, listeners=[listener]
        )
        assert len(recorded) > 50
        pair = twins(role)
        pair.control("POST", "/tokens", DOCUMENT_TOKEN) if role == "ipg" else None
        for call in recorded:
            pair.send(call)
        journals = pair.journals()
        assert journals["fast"] == journals["connexion"]


@pytest.mark.network
@pytest.mark.parametrize("role", ["bank", "ipg"])
def test_connection_faults_break_the_same_calls_alike_over_loopback(twins, serve_app, role):
    pair = twins(role, serve=serve_app, hang_seconds=0.01)
    path, example = next(iter(OPERATIONS[role].items()))
    if role == "ipg":
        pair.control("POST", "/tokens", DOCUMENT_TOKEN)
    for call in _variants(path, example, breaking=True):
        pair.send(call)
    journals = pair.journals()
    assert journals["fast"] == journals["connexion"]
    assert {"empty", "reset", "malformed"} <= {
        entry[5].get("connection_fault") for entry in journals["fast"] if isinstance(entry[5], dict)
    }


_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding", "user-agent"}


def test_with_validate_responses_an_answer_the_document_does_not_allow_is_a_500(make_mocks, monkeypatch):
    async def wrong(self: Any, request: dict[str, str]) -> dict[str, str]:
        return {"output_ResponseCode": "0"}  # three fields missing

    monkeypatch.setattr(ipg_rules.IpgRules, "redeem", wrong)
    checked = make_mocks(validate_responses=True).ipg
    assert checked.post("/token-redemption", json=DOCUMENT_REDEMPTION).status_code == 500
    fast = make_mocks().ipg  # the fast path sends what the rules made
    assert fast.post("/token-redemption", json=DOCUMENT_REDEMPTION).json() == {"output_ResponseCode": "0"}
