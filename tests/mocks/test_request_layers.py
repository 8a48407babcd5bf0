"""The mock's own ASGI layers, RequestJournal outside RequestBody: a refused body is journalled with
its answer, then drained before the connection closes; an answer a connection fault withholds is
journalled as what the client got; whatever escapes the error handlers is still answered in the
envelope."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from mpesa_atm.mocks.faults import SLOT_KEY
from mpesa_atm.mocks.records import JournalRecord
from mpesa_atm.mocks.request_body import DRAIN_BYTES, RequestBody
from mpesa_atm.mocks.request_journal import RequestJournal
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.tokens import seed_token

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


def _call(app: Any, path: str, **scope_keys: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": [], **scope_keys}
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


# The lingering close of a refused body (RequestBody, inside RequestJournal)

CHUNK = 16 * 1024


def _refusing_layers(store: _Journal, **settings: Any) -> RequestJournal:
    async def unreachable(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused body never reaches connexion")

    body = RequestBody(
        unreachable,
        settings=Settings(max_body_bytes=1024, **settings),
        error_answer=lambda scope, status, reason: (status, {"output_ResponseCode": "-1", "reason": reason}),
    )
    return _layer(body, store)


def _upload(
    app: Any, chunks: int | None, headers: list[tuple[bytes, bytes]], *, stall_after: int | None = None
) -> tuple[list[Any], int]:
    """Sends `chunks` chunks of CHUNK bytes (None: without end), stalling for good after `stall_after`
    of them; returns what was sent back, with a "read" marker where the app read a chunk, and how
    many chunks the app read."""
    events: list[Any] = []
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read == stall_after:
            await asyncio.sleep(3600)  # the rest never comes
        read += 1
        events.append("read")
        more = chunks is None or read < chunks
        return {"type": "http.request", "body": b"1" * CHUNK, "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        events.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/token-generation",
        "query_string": b"",
        "headers": headers,
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    return events, read


def test_a_refused_body_is_answered_journalled_then_drained_before_the_close():
    store = _Journal()
    events, read = _upload(_refusing_layers(store), 100, [(b"content-type", b"application/json")])
    assert read == 100  # all of it: the first past the limit, then the 99 others dropped
    answered = [event for event in events if event != "read"]
    start, body, end = answered
    assert (start["status"], json.loads(body["body"])["reason"]) == (
        413,
        "request body larger than 1024 bytes",
    )
    assert (b"connection", b"close") in start["headers"]
    assert body["more_body"] is True  # the answer is out...
    assert events.index(body) < events.index("read", events.index(start))  # ...before the drain
    assert end == {"type": "http.response.body", "body": b"", "more_body": False}  # then the close
    (record,) = store.records  # journalled once, before the answer left
    assert (record.status, json.loads(record.response)["output_ResponseCode"]) == (413, "-1")


def test_the_drain_stops_after_drain_bytes():
    events, read = _upload(_refusing_layers(_Journal()), None, [])  # a body without end
    assert read * CHUNK <= DRAIN_BYTES + 2 * CHUNK
    assert events[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_the_drain_stops_after_the_body_timeout():
    started = time.monotonic()
    events, read = _upload(_refusing_layers(_Journal(), body_timeout=0.3), None, [], stall_after=1)
    assert time.monotonic() - started < 2
    assert read == 1
    assert [e.get("status") for e in events if e != "read"] == [413, None, None]
    assert events[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.mark.parametrize(
    ("headers", "drained"),
    [
        ([(b"content-length", b"3145728")], True),
        # The client waits for "100 Continue" and gets the 413 instead: it sends no body to drain.
        ([(b"content-length", b"3145728"), (b"expect", b"100-continue")], False),
    ],
    ids=["declared-length", "expect-100-continue"],
)
def test_a_body_declared_too_large_is_drained_unless_the_client_waits_for_100_continue(headers, drained):
    store = _Journal()
    events, read = _upload(_refusing_layers(store), 192, headers)  # 3 MiB
    assert read == (192 if drained else 0)
    assert [e["status"] for e in events if e != "read" and e["type"] == "http.response.start"] == [413]
    assert [record.status for record in store.records] == [413]


# Answers withheld by a connection fault, in the journal


def test_an_answer_withheld_by_a_connection_fault_is_journalled_as_what_the_client_got():
    async def faulted(scope: Any, receive: Any, send: Any) -> None:
        scope[SLOT_KEY]["connection"] = scope["fault"]  # as faults.Faults.run does
        answer = json.dumps({"output_ResponseCode": "0"}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    store = _Journal()
    for fault in ("reset", "empty", "malformed"):
        _call(_layer(faulted, store), "/token-generation", **{SLOT_KEY: {}, "fault": fault})
    entries = [(r.status, json.loads(r.response)) for r in store.records]
    withheld = {"output_ResponseCode": "0"}
    assert entries == [
        (None, {"connection_fault": "reset", "sent": None, "withheld": withheld}),
        (None, {"connection_fault": "empty", "sent": None, "withheld": withheld}),
        (
            200,
            {
                "connection_fault": "malformed",
                "sent": '{"output_ResponseCode": "0", "output_Respon',
                "withheld": withheld,
            },
        ),
    ]


def test_a_malformed_answer_is_journalled_with_the_bytes_sent_in_process(mocks):
    seed_token(mocks.ipg)
    headers = {"X-Mpesa-Atm-Fault": "connection=malformed; processed=true"}
    response = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION, headers=headers)
    assert response.status_code == 200
    (entry,) = mocks.ipg.get("/_harness/journal").json()["entries"]
    assert entry["status"] == 200
    assert entry["response"]["connection_fault"] == "malformed"
    assert entry["response"]["sent"] == response.text  # exactly what the client read
    assert entry["response"]["withheld"]["output_ResponseCode"] == "0"  # processed: the real answer


def test_a_hang_is_journalled_with_the_late_answer_it_sends(make_mocks):
    mocks = make_mocks(hang_seconds=0.2)
    seed_token(mocks.ipg)
    headers = {"X-Mpesa-Atm-Fault": "connection=hang"}
    answer = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION, headers=headers).json()
    (entry,) = mocks.ipg.get("/_harness/journal").json()["entries"]
    assert (entry["status"], entry["response"]) == (200, answer)
    assert entry["duration_ms"] >= 200
