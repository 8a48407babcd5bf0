"""Bounded connections, against `mpesa-atm serve` over loopback: a request head too large (431) or too
slow (408, or closed when nothing came), idle kept-alive connections closed, and a cap on a worker's
open connections at which the longest idle ones make room, so that a new caller is still answered.

The time-outs are set short here (2 s) through the config file; docs/reliability.md gives the defaults.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.fixtures.mocks import DOCUMENT_GENERATION
from tests.fixtures.servers import Served, wait_for
from tests.reliability.helpers import descendants, host_port, read_answer, readable

pytestmark = pytest.mark.network

SHORT = 2.0  # seconds: header_timeout and keep_alive in these tests
# header_timeout, checked four times per time-out (a quarter of it), and slack for a loaded machine
CLOSED_WITHIN = SHORT * 1.25 + 2.0
JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024


def _served_with(serve, tmp_path: Path, settings: str) -> Served:
    config = tmp_path / "connections.toml"
    config.write_text(settings)
    served: Served = serve("--config", str(config), role="bank")
    return served


def _seconds_until_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Reads until the server closes; the seconds it took and what it sent meanwhile."""
    start = time.monotonic()
    sock.settimeout(limit)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return time.monotonic() - start, received


def _generation(transaction_id: str) -> bytes:
    body = json.dumps({**DOCUMENT_GENERATION, "input_TransactionID": transaction_id}).encode()
    head = "POST /token-generation HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_a_silent_connection_is_closed_after_the_header_timeout(serve, tmp_path):
    served = _served_with(serve, tmp_path, f"header_timeout = {SHORT}\n")
    with socket.create_connection(host_port(served.bank_url)) as sock:
        elapsed, received = _seconds_until_closed(sock, limit=10)
    assert received == b""  # nothing asked, nothing answered
    assert SHORT * 0.9 <= elapsed < CLOSED_WITHIN, elapsed


def test_half_a_request_head_is_answered_408_after_the_header_timeout(serve, tmp_path):
    served = _served_with(serve, tmp_path, f"header_timeout = {SHORT}\n")
    with socket.create_connection(host_port(served.bank_url), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /token-generation HTTP/1.1\r\nHost: mock\r\nX-Half: a")
        status, _headers, body = read_answer(sock)
        elapsed = time.monotonic() - start
    assert status == 408, body
    assert json.loads(body)["output_ResponseCode"] == "-1"
    assert SHORT * 0.9 <= elapsed < CLOSED_WITHIN, elapsed


def test_half_a_head_on_a_kept_alive_connection_is_answered_408(serve, tmp_path):
    served = _served_with(serve, tmp_path, f"header_timeout = {SHORT}\nkeep_alive = 30\n")
    with socket.create_connection(host_port(served.bank_url), timeout=10) as sock:
        sock.sendall(_generation("HT0001"))
        status, _headers, body = read_answer(sock)
        assert status == 200, body
        time.sleep(0.1)
        start = time.monotonic()
        sock.sendall(b"POST /token-generation HTTP/1.1\r\nHost: mock\r\n")
        status, _headers, body = read_answer(sock)
        elapsed = time.monotonic() - start
    assert status == 408, body
    assert elapsed < CLOSED_WITHIN, elapsed


def test_an_idle_kept_alive_connection_is_closed_after_keep_alive(serve, tmp_path):
    served = _served_with(serve, tmp_path, f"keep_alive = {SHORT}\n")
    with socket.create_connection(host_port(served.bank_url), timeout=10) as sock:
        sock.sendall(_generation("KA0001"))
        status, headers, body = read_answer(sock)
        assert status == 200, body
        assert headers.get("connection", "") != "close"
        elapsed, received = _seconds_until_closed(sock, limit=10)
    assert received == b""
    assert SHORT * 0.9 <= elapsed < SHORT + 2.0, elapsed


def _rss(served: Served) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in descendants(served.process.pid))


@pytest.mark.parametrize(
    ("piece", "expected"),
    [(4 * 1024, 431), (64, 408)],
    ids=["4KiB-a-piece-431-past-32KiB", "64B-a-piece-408-past-10s"],
)
def test_an_endless_header_sent_slowly_is_answered_and_the_worker_stays_small(serve, piece, expected):
    served: Served = serve(role="bank")  # the defaults: 32 KiB of head, 10 s to send it
    before = _rss(served)
    chunk = b"X-Endless: " + b"a" * (piece - 11)  # 10 pieces a second, a header that never ends
    with socket.create_connection(host_port(served.bank_url), timeout=15) as sock:
        start = time.monotonic()
        sock.sendall(b"POST /token-generation HTTP/1.1\r\nHost: mock\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - start < 15 and not readable(sock):
                sock.sendall(chunk)
                time.sleep(0.1)
        status, _headers, body = read_answer(sock)
        elapsed = time.monotonic() - start
    grown = _rss(served) - before
    assert status == expected, body
    assert json.loads(body)["output_ResponseCode"] == "-1"
    assert elapsed < 15, elapsed
    assert grown < 48 * MIB, grown / MIB


@contextlib.contextmanager
def _open_file_limit(limit: int) -> Iterator[None]:
    """The processes started meanwhile inherit an open-file limit of `limit`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("settings", ["max_connections = 200\n", ""], ids=["cap-200", "cap-from-file-limit"])
def test_idle_connections_make_room_for_a_new_caller_at_the_cap(serve, tmp_path, settings):
    with _open_file_limit(256):  # without a cap, 300 connections would exhaust the worker's files
        served = _served_with(serve, tmp_path, settings + "header_timeout = 60\n")
    idle = [socket.create_connection(host_port(served.bank_url), timeout=2) for _ in range(300)]
    try:
        # The longest idle connections were closed to make room for the later ones.
        wait_for(lambda: _closed(idle[0]), "the first idle connection closed", timeout=10)
        host, port = host_port(served.bank_url)
        caller = http.client.HTTPConnection(host, port, timeout=10)
        body = json.dumps({**DOCUMENT_GENERATION, "input_TransactionID": "CAP0001"})
        caller.request("POST", "/token-generation", body=body, headers=JSON)
        answer = json.loads(caller.getresponse().read())
        caller.close()
    finally:
        for sock in idle:
            sock.close()
    assert answer["output_ResponseCode"] == "0", answer
    assert served.log().count("connections open, its cap (max_connections)") == 1, served.log()


def _closed(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.settimeout(timeout)
