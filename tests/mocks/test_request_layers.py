"""The mock's own ASGI layers, RequestJournal outside RequestBody: a refused body is journalled with
its answer, and whatever escapes the error handlers is still answered in the envelope."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mpesa_atm.mocks.journal import JournalRecord
from mpesa_atm.mocks.request_journal import RequestJournal
from tests.fixtures.mocks import DOCUMENT_GENERATION

JSON = {"Content-Type": "application/json"}


def test_a_body_over_the_limit_is_journalled_with_its_413(make_mocks):
    mocks = make_mocks(max_body_bytes=1024)
    content = json.dumps({**DOCUMENT_GENERATION, "input_AccountNumber": "1" * 2000}).encode()
    response = mocks.bank.post("/token-generation", content=content, headers=JSON)
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    (entry,) = mocks.bank.get("/_harness/journal").json()["entries"]
    assert (entry["status"], entry["request"], entry["response"]) == (413, "", response.json())
    assert entry["operation"] == "token_generation"


def test_a_chunked_body_reaches_connexion_with_its_length(mocks):
    chunks = iter([json.dumps(DOCUMENT_GENERATION).encode()])
    response = mocks.bank.post("/token-generation", content=chunks, headers=JSON)  # no Content-Length
    assert response.status_code == 200
    assert response.json()["output_ResponseCode"] == "0"
    (entry,) = mocks.bank.get("/_harness/journal").json()["entries"]
    assert entry["request"] == DOCUMENT_GENERATION


class _Journal:
    def __init__(self) -> None:
        self.records: list[JournalRecord] = []

    async def journal_in_next_write(self, record: JournalRecord) -> None:
        self.records.append(record)


def _call(app: Any, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent


def _layer(app: Any, store: _Journal) -> RequestJournal:
    return RequestJournal(
        app,
        role="bank",
        store=store,  # type: ignore[arg-type]
        error_answer=lambda scope, status, reason: (status, {"output_ResponseCode": "-1", "reason": reason}),
        operations={"/token-generation": "token_generation"},
    )


def test_what_escapes_the_error_handlers_is_answered_500_in_the_envelope_and_journalled():
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise LookupError("a bug of the mock")

    store = _Journal()
    start, body = _call(_layer(broken, store), "/token-generation")
    assert start["status"] == 500
    assert (b"connection", b"close") in start["headers"]
    answer = json.loads(body["body"])
    assert answer == {"output_ResponseCode": "-1", "reason": "internal error of the mock (LookupError)"}
    (record,) = store.records
    assert (record.status, json.loads(record.response)) == (500, answer)


def test_an_answer_whose_start_was_held_is_replaced_by_the_500():
    async def broken_after_the_start(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise LookupError("a bug of the mock")

    store = _Journal()
    sent = _call(_layer(broken_after_the_start, store), "/token-generation")
    assert [message.get("status") for message in sent] == [500, None]  # the held 200 never left
    assert [record.status for record in store.records] == [500]


def test_a_control_call_is_passed_on_and_not_journalled():
    async def answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    store = _Journal()
    sent = _call(_layer(answer, store), "/_harness/journal")
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert store.records == []
