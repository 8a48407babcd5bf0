"""The mocks' fault rules on the proxy: a code answered without forwarding, `times` claimed in the
shared store, `match`, the header, and a `processed: true` reset whose retry the iPG answers -3."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from mpesa_atm.mocks import create_app
from mpesa_atm.proxy.factory import create_proxy
from mpesa_atm.proxy.judge import Judge
from mpesa_atm.proxy.ledger import Ledger
from mpesa_atm.settings import Settings
from mpesa_atm.spec import OPERATION_PATHS
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, Running
from tests.fixtures.tokens import seed_token

GENERATED = {
    "output_ResponseCode": "0",
    "output_ResponseDesc": "Success",
    "output_BankTransactionRef": "12345678123412341234123456789abc",
    "output_BankDateTime": "20190611 223210",
}
GENERATION = OPERATION_PATHS["token_generation"]
REDEMPTION = OPERATION_PATHS["token_redemption"]


class Bank:
    """A bank written from the document that answers every generation 0, and keeps the headers of
    each call it got: what reached the upstream."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls.append({n.decode(): v.decode() for n, v in scope["headers"]})
        body = json.dumps(GENERATED).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def proxy(
    settings: Settings, running: Running, judges: dict[str, Judge], tmp_path: Path
) -> Callable[..., tuple[Any, TestClient, list[str]]]:
    """Starts a proxy of `role` in front of the ASGI app `upstream`, its store `db` (one file a test
    by default; two proxies given one name share it): its app, a client of it, its lines."""

    def start(
        role: str, upstream: Any, *, db: str = "proxy", served: bool = False, **options: Any
    ) -> tuple[Any, TestClient, list[str]]:
        lines: list[str] = []
        chosen = settings.replace(db_path=str(tmp_path / f"{db}.sqlite3"), **options)
        app = create_proxy(
            role,  # type: ignore[arg-type]
            chosen,
            upstream="http://upstream.test",
            judge=judges[role],
            out=lines.append,
            transport=httpx.ASGITransport(app=upstream),
            ledger_of=Ledger,
        )
        return app, running.client(running.start(app), base_url="http://proxy.test"), lines

    return start


def add_fault(client: TestClient, rule: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/_harness/faults", json=rule)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def journal(client: TestClient) -> list[dict[str, Any]]:
    """The proxy's journal, oldest first."""
    return list(reversed(client.get("/_harness/journal").json()["entries"]))


def test_a_code_rule_is_answered_by_the_proxy_and_never_forwarded(proxy: Callable[..., Any]) -> None:
    bank = Bank()
    app, client, lines = proxy("bank", bank)
    rule = add_fault(client, {"operation": "token_generation", "response_code": "-7", "times": 1})
    refused = client.post(GENERATION, json=DOCUMENT_GENERATION)
    assert refused.status_code == 200 and refused.json()["output_ResponseCode"] == "-7"
    assert refused.json()["output_ResponseDesc"] == "System Too Busy: fault injected by the harness"
    assert bank.calls == []  # the upstream saw nothing
    passed = client.post(GENERATION, json=DOCUMENT_GENERATION)  # times: 1, so this one goes through
    assert passed.json() == GENERATED and len(bank.calls) == 1
    first, second = journal(client)
    assert first["upstream_status"] is None and first["response"]["output_ResponseCode"] == "-7"
    assert first["fault"] == f"rule {rule['id']} (response_code=-7)"
    assert second["upstream_status"] == 200 and second["fault"] is None
    assert lines[0].endswith(f"FAULT rule {rule['id']} (response_code=-7)") and "FAULT" not in lines[1]
    # The proxy's own answer is not judged as the upstream's: nothing found, the run passes.
    assert client.get("/_harness/faults").json()["faults"][0]["remaining"] == 0
    assert app.run.finish().exit_code == 0


def test_times_one_fires_once_across_two_proxies_on_one_store(proxy: Callable[..., Any]) -> None:
    bank = Bank()
    _, one, _ = proxy("bank", bank, db="shared")
    _, two, _ = proxy("bank", bank, db="shared")
    add_fault(one, {"response_code": "-9", "times": 1})
    assert two.get("/_harness/faults").json()["faults"][0]["remaining"] == 1  # one store, one rule
    codes = [
        c.post(GENERATION, json=DOCUMENT_GENERATION).json()["output_ResponseCode"] for c in (two, one, two)
    ]
    assert codes == ["-9", "0", "0"] and len(bank.calls) == 2


def test_a_rule_with_match_applies_only_to_matching_calls(proxy: Callable[..., Any]) -> None:
    bank = Bank()
    _, client, _ = proxy("bank", bank)
    add_fault(client, {"response_code": "-2", "match": {"input_CustomerMSISDN": "243811111111"}})
    other = client.post(GENERATION, json=DOCUMENT_GENERATION)
    matched = client.post(GENERATION, json={**DOCUMENT_GENERATION, "input_CustomerMSISDN": "243811111111"})
    assert other.json()["output_ResponseCode"] == "0" and matched.json()["output_ResponseCode"] == "-2"
    assert len(bank.calls) == 1


def test_the_fault_header_applies_on_the_proxy_and_is_not_passed_on(proxy: Callable[..., Any]) -> None:
    bank = Bank()
    _, client, _ = proxy("bank", bank)
    told = client.post(
        GENERATION, json=DOCUMENT_GENERATION, headers={"X-Mpesa-Atm-Fault": "response_code=-6"}
    )
    assert told.json()["output_ResponseCode"] == "-6" and bank.calls == []
    delayed = client.post(GENERATION, json=DOCUMENT_GENERATION, headers={"X-Mpesa-Atm-Fault": "delay_ms=1"})
    assert delayed.json() == GENERATED and "x-mpesa-atm-fault" not in bank.calls[0]
    bad = client.post(GENERATION, json=DOCUMENT_GENERATION, headers={"X-Mpesa-Atm-Fault": "nonsense"})
    assert bad.json()["output_ResponseCode"] == "-1" and "bad X-Mpesa-Atm-Fault header" in bad.text
    assert len(bank.calls) == 1
    assert journal(client)[1]["fault"] == "the X-Mpesa-Atm-Fault header (delay_ms=1.0)"


def test_a_processed_reset_loses_the_answer_and_the_retry_gets_the_first_reference(
    settings: Settings, running: Running, proxy: Callable[..., Any]
) -> None:
    ipg = running.start(create_app("ipg", settings))
    ipg_client = running.client(ipg, base_url="http://ipg.test")
    seed_token(ipg_client)
    app, client, lines = proxy("ipg", ipg)
    add_fault(client, {"operation": "token_redemption", "connection": "reset", "processed": True, "times": 1})
    with pytest.raises(ConnectionResetError):  # in process, the broken connection is raised
        client.post(REDEMPTION, json=DOCUMENT_REDEMPTION)
    # The upstream committed the call: its journal has it answered 0.
    (paid,) = ipg_client.get("/_harness/journal").json()["entries"]
    assert paid["response"]["output_ResponseCode"] == "0"
    reference = paid["response"]["output_InsightReference"]
    retry = client.post(REDEMPTION, json=DOCUMENT_REDEMPTION)
    assert (
        retry.json()["output_ResponseCode"] == "-3" and retry.json()["output_InsightReference"] == reference
    )
    lost, again = journal(client)
    assert lost["status"] is None and lost["upstream_status"] == 200
    assert lost["response"]["connection_fault"] == "reset" and lost["response"]["sent"] is None
    assert lost["response"]["withheld"]["output_InsightReference"] == reference
    assert "processed" in lost["fault"] and " - - " in lines[0]
    assert again["response"]["output_InsightReference"] == reference and again["fault"] is None
    result = app.run.finish()  # the upstream's answers are judged: 0, then -3 with the first reference
    assert result.exit_code == 0 and result.verdict("replay_is_duplicate").status == "passed"


def test_a_reset_without_processed_breaks_the_served_connection_before_forwarding(
    settings: Settings, judges: dict[str, Judge], tmp_path: Path, serve_app: Callable[..., str]
) -> None:
    bank = Bank()
    app = create_proxy(
        "bank",
        settings.replace(db_path=str(tmp_path / "served.sqlite3")),
        upstream="http://upstream.test",
        judge=judges["bank"],
        out=lambda line: None,
        transport=httpx.ASGITransport(app=bank),
    )
    url = serve_app(app)
    with httpx.Client(base_url=url, timeout=5) as client:
        add = client.post("/_harness/faults", json={"connection": "reset", "times": 1})
        assert add.status_code == 201, add.text
        with pytest.raises(httpx.TransportError):
            client.post(GENERATION, json=DOCUMENT_GENERATION)
        assert bank.calls == []
        assert client.post(GENERATION, json=DOCUMENT_GENERATION).json() == GENERATED
        (_, broken) = client.get("/_harness/journal").json()["entries"]
        assert broken["status"] is None and broken["upstream_status"] is None
        assert broken["response"]["withheld"]["output_ResponseCode"] == "-1"


def test_the_fault_routes_answer_bad_input_in_the_control_format(proxy: Callable[..., Any]) -> None:
    _, client, _ = proxy("ipg", Bank())
    wrong_code = client.post("/_harness/faults", json={"response_code": "-3"})  # the iPG's own rules say -3
    assert wrong_code.status_code == 400 and wrong_code.json()["error"] == "Bad Request"
    extra = client.post("/_harness/faults", json={"response_code": "-7", "what": 1})
    assert extra.status_code == 400 and "what" in extra.json()["detail"]
    assert (
        client.post(
            "/_harness/faults", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        client.post("/_harness/faults", content=b"x", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    assert client.delete("/_harness/faults/nope").status_code == 404
    rule = add_fault(client, {"response_code": "-7"})
    assert client.delete(f"/_harness/faults/{rule['id']}").status_code == 204
    assert client.get("/_harness/faults").json() == {"faults": []}
    assert client.put("/_harness/faults").status_code == 405


def test_a_control_token_guards_the_fault_rules(proxy: Callable[..., Any]) -> None:
    _, client, _ = proxy("bank", Bank(), control_token="s3cret-token")
    assert client.post("/_harness/faults", json={"response_code": "-7"}).status_code == 401
    allowed = client.post(
        "/_harness/faults", json={"response_code": "-7"}, headers={"Authorization": "Bearer s3cret-token"}
    )
    assert allowed.status_code == 201
    for view in ("/_harness/journal", "/_harness/violations"):  # what went through, passwords masked
        assert client.get(view).status_code == 401
        assert client.get(view, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_a_mock_of_the_role_on_the_same_store_keeps_its_rules_apart(
    settings: Settings, running: Running, proxy: Callable[..., Any]
) -> None:
    ipg = running.start(create_app("ipg", settings))
    ipg_client = running.client(ipg, base_url="http://ipg.test")
    seed_token(ipg_client)
    _, client, _ = proxy("ipg", ipg, db=Path(settings.db_path).stem)  # the mock's own file
    add_fault(client, {"operation": "token_redemption", "response_code": "-8"})
    assert ipg_client.get("/_harness/faults").json() == {"faults": []}
    assert ipg_client.post("/_harness/reset").status_code == 200  # the mock's reset: its own rules
    seed_token(ipg_client)
    assert client.post(REDEMPTION, json=DOCUMENT_REDEMPTION).json()["output_ResponseCode"] == "-8"
    assert journal(client)[0]["upstream_status"] is None  # the proxy's answer, never forwarded
    assert len(journal(client)) == 1  # its one exchange, none of the mock's entries
    # The mock's journal shows its own calls, not the proxy's exchanges on the same store.
    assert ipg_client.post(REDEMPTION, json=DOCUMENT_REDEMPTION).json()["output_ResponseCode"] == "0"
    mocks = ipg_client.get("/_harness/journal")
    assert mocks.status_code == 200, mocks.text
    assert {entry["direction"] for entry in mocks.json()["entries"]} == {"inbound"}


def test_a_processed_malformed_answer_reaches_the_upstream_and_the_client_reads_half_a_body(
    proxy: Callable[..., Any],
) -> None:
    bank = Bank()
    _, client, _ = proxy("bank", bank)
    add_fault(client, {"connection": "malformed", "processed": True, "times": 1})
    broken = client.post(GENERATION, json=DOCUMENT_GENERATION)
    assert broken.status_code == 200 and len(bank.calls) == 1
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    (entry,) = journal(client)
    assert entry["status"] == 200 and entry["upstream_status"] == 200
    assert entry["response"]["connection_fault"] == "malformed"
    assert entry["response"]["sent"] == broken.text and entry["response"]["withheld"] == GENERATED
