"""A refused body is drained before the connection closes (RequestBody's lingering close): a client
that sends its whole body before it reads gets the 413 or 408 envelope, not a connection reset.

Real clients against `mpesa-atm serve` over loopback: closing on unread bytes resets the connection
only with a real TCP stack, and whether the answer survives the reset depends on the kernel's
buffers, so each upload is made a few times.
"""

from __future__ import annotations

import http.client
import json
import select
import shutil
import socket
import subprocess
import time

import httpx
import pytest
import requests

from mpesa_atm.mocks.request_body import DRAIN_BYTES
from tests.reliability.helpers import BANK_FIELDS, assert_refused_in_envelope, host_port, read_answer

pytestmark = pytest.mark.network

THREE_MIB = 3 * 1024 * 1024
BODY_TIMEOUT = 1.0
TRIES = 3
JSON = {"Content-Type": "application/json"}


def oversized(size: int = THREE_MIB) -> bytes:
    return b'{"input_AccountNumber": "' + b"1" * size + b'"}'


@pytest.fixture(scope="module")
def bank_url(serve_for_module, tmp_path_factory) -> str:
    config = tmp_path_factory.mktemp("lingering") / "mpesa-atm.toml"
    config.write_text(f"body_timeout = {BODY_TIMEOUT}\n")
    return serve_for_module("--config", str(config), role="bank").urls["bank"]


def with_http_client(url: str, body: bytes) -> tuple[int, str, bytes]:
    host, port = host_port(url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", "/token-generation", body=body, headers=JSON)  # all of it, then reads
        response = connection.getresponse()
        return response.status, response.getheader("content-type", ""), response.read()
    finally:
        connection.close()


def with_requests(url: str, body: bytes) -> tuple[int, str, bytes]:
    response = requests.post(f"{url}/token-generation", data=body, headers=JSON, timeout=10)
    return response.status_code, response.headers.get("content-type", ""), response.content


def with_requests_chunked(url: str, body: bytes) -> tuple[int, str, bytes]:
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
    response = requests.post(f"{url}/token-generation", data=pieces, headers=JSON, timeout=10)
    return response.status_code, response.headers.get("content-type", ""), response.content


def with_httpx(url: str, body: bytes) -> tuple[int, str, bytes]:
    response = httpx.post(f"{url}/token-generation", content=body, headers=JSON, timeout=10)
    return response.status_code, response.headers.get("content-type", ""), response.content


def with_curl(url: str, body: bytes, *extra: str) -> tuple[int, str, bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    command = ["curl", "-sS", "--max-time", "10", "-H", "Content-Type: application/json", *extra]
    command += ["-w", "\n%{http_code} %{content_type}", "--data-binary", "@-", f"{url}/token-generation"]
    done = subprocess.run(
        command,
        input=body,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()  # 55, 56: failed sending, receiving (a reset)
    answer, _, written = done.stdout.rpartition(b"\n")
    status, _, content_type = written.decode().partition(" ")
    return int(status), content_type, answer


CLIENTS = {
    "http.client": with_http_client,
    "requests": with_requests,
    "requests-chunked": with_requests_chunked,
    "httpx": with_httpx,
    "curl": with_curl,  # sends "Expect: 100-continue" for a large body: the 413 comes first
    "curl-without-expect": lambda url, body: with_curl(url, body, "-H", "Expect:"),
}


@pytest.mark.parametrize("client", CLIENTS)
def test_a_3_mib_body_gets_the_413_envelope_and_no_reset(bank_url, client):
    for _ in range(TRIES):
        status, content_type, answer = CLIENTS[client](bank_url, oversized())
        assert status == 413
        refusal = assert_refused_in_envelope(status, content_type, answer, BANK_FIELDS)
        assert "larger than 65536 bytes" in refusal["output_ResponseDesc"]
    assert httpx.get(f"{bank_url}/_harness/health").status_code == 200


def test_past_the_drain_bound_the_connection_is_closed(bank_url):
    head = (
        "POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * DRAIN_BYTES}\r\n\r\n"
    ).encode()
    chunk = b"1" * (1024 * 1024)
    sent = 0
    with socket.create_connection(host_port(bank_url), timeout=10) as sock:
        sock.sendall(head)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < 64 * DRAIN_BYTES:
                sock.sendall(chunk)
                sent += len(chunk)
    # What the mock read and dropped, plus what the sockets' buffers held: far from all of it.
    assert sent < 8 * DRAIN_BYTES
    assert httpx.get(f"{bank_url}/_harness/health").status_code == 200


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED_HEAD = (
    b"POST /token-generation HTTP/1.1\r\nHost: bank\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def test_a_body_that_resumes_after_its_408_gets_the_envelope_and_a_clean_close(bank_url):
    with socket.create_connection(host_port(bank_url), timeout=10) as sock:
        sock.sendall(CHUNKED_HEAD + chunked(b'{"input_AccountNumber": "' + b"1" * 16 * 1024))
        # Stalled (the test's input) until the 408 arrives: readable, the answer is in.
        assert select.select([sock], [], [], BODY_TIMEOUT + 5)[0], "no 408 for a stalled body"
        # A client that sends all before it reads: the rest of its body, then it reads.
        for _ in range(64):
            sock.sendall(chunked(b"1" * 16 * 1024))
        sock.sendall(chunked(b'"}') + b"0\r\n\r\n")
        status, headers, answer = read_answer(sock)
        assert status == 408
        assert headers["connection"] == "close"
        assert_refused_in_envelope(status, headers["content-type"], answer, BANK_FIELDS)
        assert sock.recv(1) == b""  # then closed with a FIN: no reset


def test_a_body_that_stays_stalled_after_its_408_is_let_go_after_another_body_timeout(bank_url):
    with socket.create_connection(host_port(bank_url), timeout=10) as sock:
        sock.sendall(CHUNKED_HEAD + chunked(b'{"input_Amount": "2'))  # and nothing more
        started = time.monotonic()
        status, headers, answer = read_answer(sock)
        assert status == 408
        assert_refused_in_envelope(status, headers["content-type"], answer, BANK_FIELDS)
        assert sock.recv(1) == b""
        # Up to body_timeout for the body, as long again for the rest (the deadline is checked
        # every quarter of it).
        assert time.monotonic() - started < 2 * BODY_TIMEOUT + 1.5


def test_a_refused_body_is_in_the_journal_when_its_answer_arrives(bank_url):
    httpx.post(f"{bank_url}/_harness/reset").raise_for_status()
    status, _, answer = with_http_client(bank_url, oversized())
    assert status == 413
    (entry,) = httpx.get(f"{bank_url}/_harness/journal").json()["entries"]
    assert (entry["status"], entry["request"], entry["response"]) == (413, "", json.loads(answer))
