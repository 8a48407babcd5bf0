"""Hostile input: every malformed, oversized or misdirected request gets a 4xx answer in the API's
envelope (code -1), never a 5xx or a hang, and the mock answers a valid request right after.

The corpus runs in process and over loopback; what only a socket can send (a lying Content-Length,
a stalled or oversized upload, a broken request line) runs over loopback.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
from starlette.testclient import TestClient

from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, lifespan
from tests.reliability.helpers import (
    BANK_FIELDS,
    IPG_FIELDS,
    assert_refused_in_envelope,
    host_port,
    raw_exchange,
    read_answer,
)

JSON = {"Content-Type": "application/json"}
LIMIT = 64 * 1024
THREE_MIB = 3 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[str], bytes]  # role -> the body
    status: int = 400
    method: str = "POST"
    path: str = "{op}"  # {op}: the role's operation path, {OP}: the same in upper case
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    xfail: str | None = None  # a known defect, with the file that has to change


ROLES = {
    "bank": ("/token-generation", DOCUMENT_GENERATION, BANK_FIELDS),
    "ipg": ("/token-redemption", DOCUMENT_REDEMPTION, IPG_FIELDS),
}


def body(role: str, **changes: Any) -> bytes:
    """The role's document example body with fields changed (None: left out)."""
    fields = {**ROLES[role][1], **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


def raw(content: bytes | str) -> Callable[[str], bytes]:
    data = content.encode() if isinstance(content, str) else content
    return lambda role: data


def fields(**changes: Any) -> Callable[[str], bytes]:
    return lambda role: body(role, **changes)


def amount(literal: bytes) -> Callable[[str], bytes]:
    """The body with input_Amount written as the JSON literal given (not a string)."""
    return lambda role: body(role).replace(b'"input_Amount": "200"', b'"input_Amount": ' + literal)


# Known defects, each with the change that fixes it (strict: an XPASS says the mark can go).

CORPUS = [
    # Not JSON, or not UTF-8
    Case("non-utf8-bytes", raw(b'{"input_Amount": "\xff\xfe200"}')),
    Case("latin-1-text", raw('{"input_CustomerMSISDN": "caf\xe9"}'.encode("latin-1"))),
    Case("utf-16", lambda role: json.dumps(ROLES[role][1]).encode("utf-16")),
    Case("utf-8-bom", lambda role: b"\xef\xbb\xbf" + body(role)),
    Case("truncated", lambda role: body(role)[:-9]),
    Case("nul-byte", raw(b'{"input_TransactionID": "\x00"}')),  # PostgreSQL's text refuses it
    Case("empty", raw(b"")),
    Case("whitespace-only", raw("  \r\n\t ")),
    Case("single-quotes", lambda role: body(role).replace(b'"', b"'")),
    Case("trailing-garbage", lambda role: body(role) + b"}}"),
    # Not an object
    Case("null", raw("null")),
    Case("true", raw("true")),
    Case("number", raw("42")),
    Case("string", raw('"input_Amount"')),
    Case("array-of-the-body", lambda role: b"[" + body(role) + b"]"),
    Case("empty-array", raw("[]")),
    Case("empty-object", raw("{}")),
    # Nested deeply, under the size limit
    Case("nested-arrays-closed", raw("[" * 30_000 + "]" * 30_000)),
    Case("nested-arrays-unclosed", raw("[" * 60_000)),
    Case("nested-objects", raw('{"a":' * 10_000 + "1" + "}" * 10_000)),
    Case("nested-in-a-field", amount(b"[" * 20_000 + b"]" * 20_000)),
    # Wrong types where the document says String
    Case("amount-as-number", amount(b"200")),
    Case("amount-as-float", amount(b"200.5")),
    Case("amount-as-bool", amount(b"true")),
    Case("amount-as-null", amount(b"null")),
    Case("amount-as-array", amount(b'["200"]')),
    Case("amount-as-object", amount(b'{"value": "200"}')),
    Case("msisdn-as-number", fields(input_CustomerMSISDN=243843330333)),
    Case("huge-integer", amount(b"9" * 5000)),
    Case("number-overflowing-float", amount(b"1e400")),
    # Amounts that are not the documented decimals
    Case("amount-NaN-literal", amount(b"NaN")),
    Case("amount-Infinity-literal", amount(b"-Infinity")),
    Case("amount-NaN-string", fields(input_Amount="NaN")),
    Case("amount-exponent", fields(input_Amount="2e2")),
    Case("amount-exponent-upper-case", fields(input_Amount="1E3")),
    Case("amount-hex", fields(input_Amount="0x10")),
    Case("amount-negative", fields(input_Amount="-200")),
    Case("amount-zero", fields(input_Amount="0")),
    Case("amount-three-decimals", fields(input_Amount="200.001")),
    Case("amount-with-space", fields(input_Amount=" 200")),
    Case("amount-thousands-separator", fields(input_Amount="2,000")),
    Case("amount-arabic-indic-digits", fields(input_Amount="\u0662\u0660\u0660")),
    Case("amount-final-newline", fields(input_Amount="200\n")),
    # MSISDNs in other digits, or not only digits
    Case(
        "msisdn-fullwidth-digits",
        fields(input_CustomerMSISDN="\uff12\uff14\uff13\uff18\uff14\uff13\uff13\uff13"),
    ),
    Case(
        "msisdn-arabic-indic-digits",
        fields(input_CustomerMSISDN="\u0662\u0664\u0663\u0668\u0664\u0663\u0663\u0663"),
    ),
    Case(
        "msisdn-devanagari-digits",
        fields(input_CustomerMSISDN="\u0968\u096a\u0969\u096e\u096a\u0969\u0969\u0969"),
    ),
    Case(
        "msisdn-superscripts", fields(input_CustomerMSISDN="\u00b2\u2074\u00b3\u2078\u2074\u00b3\u00b3\u00b3")
    ),
    Case("msisdn-plus", fields(input_CustomerMSISDN="+243843330333")),
    Case("msisdn-final-newline", fields(input_CustomerMSISDN="243843330333\n")),
    Case("msisdn-nul", fields(input_CustomerMSISDN="2438433\u00000333")),
    Case("msisdn-too-long", fields(input_CustomerMSISDN="2" * 16)),
    Case("msisdn-lone-surrogate", lambda role: body(role).replace(b"243843330333", b"\\ud800")),
    # Shape of the object
    Case("missing-field", fields(input_Amount=None)),
    Case("unknown-field", fields(input_Extra="x")),
    Case("currency-lower-case", fields(input_Currency="cdf")),
    # Content type
    Case("text-plain", body, 415, headers={"Content-Type": "text/plain"}),
    Case(
        "form-encoded",
        raw("input_Amount=200"),
        415,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case("multipart", body, 415, headers={"Content-Type": "multipart/form-data; boundary=x"}),
    Case("json-lookalike", body, 415, headers={"Content-Type": "application/jsonx"}),
    Case("no-content-type", body, 415, headers={}),
    Case("garbage-content-type", body, 415, headers={"Content-Type": ";;=/="}),
    Case("unknown-charset", body, 415, headers={"Content-Type": "application/json;charset=x-unknown"}),
    Case("latin-1-charset", body, 415, headers={"Content-Type": "application/json; charset=latin-1"}),
    Case("iso-8859-1-charset", body, 415, headers={"Content-Type": "application/json;charset=ISO-8859-1"}),
    Case("utf-16-charset", body, 415, headers={"Content-Type": "Application/JSON; Charset=UTF-16"}),
    Case("upper-case-media-type", raw("[]"), headers={"Content-Type": "APPLICATION/JSON"}),
    # Method and path
    Case("get", raw(b""), 405, method="GET", headers={}),
    Case("put", body, 405, method="PUT"),
    Case("delete", raw(b""), 405, method="DELETE", headers={}),
    Case("patch", body, 405, method="PATCH"),
    Case("options", raw(b""), 405, method="OPTIONS", headers={}),
    Case("unknown-path", body, 404, path="/token"),
    Case("path-in-upper-case", body, 404, path="{OP}"),
    Case("root", body, 404, path="/"),
    Case("junk-query-string", body, path="{op}?a=%ff%fe&b"),
    # Size
    Case("over-the-limit", raw(b'{"x": "' + b"a" * LIMIT + b'"}'), 413),
    Case("3-mib", raw(b'{"x": "' + b"a" * THREE_MIB + b'"}'), 413),
]


def corpus_params() -> list[Any]:
    params = []
    for role in ROLES:
        for case in CORPUS:
            marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
            params.append(pytest.param(role, case, id=f"{role}-{case.id}", marks=marks))
    return params


def valid_request(role: str) -> tuple[str, dict[str, str]]:
    """A request the mock must still answer 200 (0 or another business code) after a hostile one."""
    if role == "bank":
        return "/token-generation", {**DOCUMENT_GENERATION, "input_TransactionID": uuid.uuid4().hex[:20]}
    return "/token-redemption", {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": uuid.uuid4().hex[:20]}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    settings = Settings(db_path=str(tmp_path_factory.mktemp("hostile") / "mocks.sqlite3"))
    with TestClient(create_app("bank", settings)) as bank, TestClient(create_app("ipg", settings)) as ipg:
        yield {"bank": bank, "ipg": ipg}


@pytest.fixture(scope="module")
def in_process_on_postgres(postgres_server):
    """The same, on the shared store, whose text and numbers refuse what SQLite takes (a NUL byte)."""
    settings = Settings(db_path=postgres_server.url(postgres_server.create_database()))
    with TestClient(create_app("bank", settings)) as bank, TestClient(create_app("ipg", settings)) as ipg:
        yield {"bank": bank, "ipg": ipg}


@pytest.fixture(scope="module")
def loopback(serve_for_module):
    served = serve_for_module()
    with (
        httpx.Client(base_url=served.bank_url, timeout=10) as bank,
        httpx.Client(base_url=served.ipg_url, timeout=10) as ipg,
    ):
        yield served, {"bank": bank, "ipg": ipg}


@pytest.fixture(params=["in-process", "postgresql", pytest.param("loopback", marks=pytest.mark.network)])
def clients(request):
    if request.param == "in-process":
        return request.getfixturevalue("in_process")
    if request.param == "postgresql":
        return request.getfixturevalue("in_process_on_postgres")
    return request.getfixturevalue("loopback")[1]


@pytest.mark.parametrize(("role", "case"), corpus_params())
def test_hostile_request_is_refused_in_the_envelope_and_the_mock_keeps_serving(clients, role, case):
    operation_path, _, envelope_fields = ROLES[role]
    path = case.path.format(op=operation_path, OP=operation_path.upper())
    response = clients[role].request(case.method, path, content=case.make(role), headers=case.headers)
    assert response.status_code == case.status, response.text[:300]
    assert_refused_in_envelope(
        response.status_code, response.headers.get("content-type", ""), response.content, envelope_fields
    )
    valid_path, valid_body = valid_request(role)
    after = clients[role].post(valid_path, json=valid_body)
    assert after.status_code == 200, after.text
    assert set(after.json()) == envelope_fields


def _with_http_client(url: str, path: str, content: bytes) -> tuple[int, str, bytes]:
    host, port = host_port(url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", path, body=content, headers=JSON)  # the whole body, then it reads
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def _with_requests(url: str, path: str, content: bytes) -> tuple[int, str, bytes]:
    response = requests.post(url + path, data=content, headers=JSON, timeout=10)
    return response.status_code, response.headers.get("content-type", ""), response.content


def _with_requests_chunked(url: str, path: str, content: bytes) -> tuple[int, str, bytes]:
    pieces = (content[i : i + 65536] for i in range(0, len(content), 65536))  # Transfer-Encoding: chunked
    response = requests.post(url + path, data=pieces, headers=JSON, timeout=10)
    return response.status_code, response.headers.get("content-type", ""), response.content


SENDERS = {
    "http.client": _with_http_client,
    "requests": _with_requests,
    "requests-chunked": _with_requests_chunked,
}


@pytest.mark.network
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize("case", ["3-mib-json", "3-mib-not-json"])
def test_a_3_mib_body_sent_whole_before_reading_gets_the_413_envelope_not_a_reset(
    loopback, role, sender, case
):
    # These clients read only once the body is sent: the mock drains the refused body before it
    # closes the connection, else the client's send or read meets a reset.
    served, _ = loopback
    operation_path, _, envelope_fields = ROLES[role]
    content = body(role, input_Amount="2" * THREE_MIB) if case == "3-mib-json" else b"\x00" * THREE_MIB
    for _ in range(3):  # whether a reset loses the answer depends on the kernel's buffers: try again
        status, content_type, answer = SENDERS[sender](served.urls[role], operation_path, content)
        assert status == 413, answer[:300]
        assert_refused_in_envelope(status, content_type, answer, envelope_fields)
    assert_still_serving(served.bank_url)


def test_media_type_is_matched_without_regard_to_case(mocks):
    response = mocks.bank.post(
        "/token-generation", content=body("bank"), headers={"Content-Type": "Application/JSON; charset=UTF-8"}
    )
    assert response.status_code == 200
    assert response.json()["output_ResponseCode"] == "0"


def test_lone_surrogate_in_the_password_is_not_an_internal_error(mocks):
    hostile = json.dumps(DOCUMENT_REDEMPTION).replace("P@ssword123", "\\ud800").encode()
    response = mocks.ipg.post("/token-redemption", content=hostile, headers=JSON)
    assert response.status_code < 500, response.text
    assert response.json()["output_ResponseCode"] in {"-1", "-4"}


def test_body_limit_is_configurable(make_mocks):
    mocks = make_mocks(max_body_bytes=2048)
    padded = body("bank", input_AccountNumber="1" * 1500)  # 400 (too long a field), but read
    assert mocks.bank.post("/token-generation", content=padded, headers=JSON).status_code == 400
    response = mocks.bank.post(
        "/token-generation", content=body("bank", input_AccountNumber="1" * 2100), headers=JSON
    )
    assert response.status_code == 413
    assert "2048" in response.json()["output_ResponseDesc"]


def test_stalled_upload_is_answered_408_in_the_envelope(settings):
    app = create_app("bank", settings.replace(body_timeout=0.2))
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": b'{"input_Amount"', "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/token-generation",
        "raw_path": b"/token-generation",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bank.test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8002),
    }

    async def call() -> None:
        async with lifespan(app):  # as a server runs it: the store closes at its end
            await asyncio.wait_for(app(scope, receive, send), 5)

    started = time.monotonic()
    asyncio.run(call())
    assert time.monotonic() - started < 3
    start, answer = sent[0], sent[1]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(answer["body"])["output_ResponseCode"] == "-1"


# Over loopback only: what an HTTP client library will not send.


@pytest.mark.network
def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent(loopback):
    served, _ = loopback
    head = (
        f"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    status, headers, answer = raw_exchange(served.bank_url, head)  # and not one byte of the body
    assert time.monotonic() - started < 2
    assert status == 413
    assert headers.get("connection") == "close"
    assert_refused_in_envelope(status, headers["content-type"], answer, BANK_FIELDS)
    assert_still_serving(served.bank_url)


@pytest.mark.network
def test_chunked_upload_over_the_limit_is_refused_once_past_it(loopback):
    served, _ = loopback
    head = (
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 16 * 1024
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    # 80 chunks (1.25 MiB) would follow; the answer comes after the fifth, and the rest is not sent.
    status, headers, answer = raw_exchange(served.bank_url, head, *[framed] * 80, pause=0.02)
    assert status == 413
    assert_refused_in_envelope(status, headers["content-type"], answer, BANK_FIELDS)
    assert_still_serving(served.bank_url)


@pytest.mark.network
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}",
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"POST /token-generation HTTP/9.9\r\nHost: bank\r\n\r\n",
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nBad Header Name: x\r\n\r\n",
    ],
    ids=[
        "length-not-a-number",
        "negative-length",
        "two-lengths",
        "bad-chunk-size",
        "no-request-line",
        "unknown-version",
        "bad-header-name",
    ],
)
def test_broken_http_framing_is_a_4xx_and_the_mock_keeps_serving(loopback, request_bytes):
    # uvicorn's parser refuses these before any application code runs, so the answer is its own
    # plain "400 Bad Request", not the envelope: no ASGI application can answer them.
    served, _ = loopback
    status, _, _ = raw_exchange(served.bank_url, request_bytes)
    assert 400 <= status < 500
    assert_still_serving(served.bank_url)


@pytest.mark.network
def test_stalled_upload_holds_only_its_own_connection(loopback):
    served, _ = loopback
    head = (
        b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200\r\n\r\n"
    )
    stalled = [socket.create_connection(host_port(served.bank_url), timeout=5) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(head + b'{"input_Amount": "2')  # and then nothing
        started = time.monotonic()
        assert_still_serving(served.bank_url)
        assert time.monotonic() - started < 2
    finally:
        for sock in stalled:
            sock.close()
    assert_still_serving(served.bank_url)


@pytest.mark.network
def test_client_that_leaves_mid_body_is_not_processed(loopback):
    served, _ = loopback
    transaction_id = uuid.uuid4().hex[:20]
    complete = body("bank", input_TransactionID=transaction_id)
    head = (
        f"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(complete) + 10}\r\n\r\n"
    ).encode()
    with socket.create_connection(host_port(served.bank_url), timeout=5) as sock:
        sock.sendall(head + complete)  # a whole valid body, then 10 promised bytes never come
        sock.shutdown(socket.SHUT_WR)  # the client leaves: the server reads the body, then the end
        assert sock.recv(1024) == b""  # it saw the client leave and closed its side, answering nothing
    # The same call made properly is the first of its TransactionID: the torn one left nothing.
    answer = httpx.post(f"{served.bank_url}/token-generation", content=complete, headers=JSON).json()
    assert answer["output_ResponseCode"] == "0"


def assert_still_serving(url: str) -> None:
    path, valid = valid_request("bank")
    with socket.create_connection(host_port(url), timeout=5) as sock:
        payload = json.dumps(valid).encode()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        status, _, answer = read_answer(sock)
    assert status == 200, answer
    assert json.loads(answer)["output_ResponseCode"] == "0"
