"""Helpers of the reliability tests: bursts of concurrent calls, killing a served process tree,
raw HTTP over a socket, and the envelope checks every hostile-input case shares."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterable
from typing import Any

import httpx
import psutil

from tests.fixtures.servers import Served

BANK_FIELDS = {
    "output_ResponseCode",
    "output_ResponseDesc",
    "output_BankTransactionRef",
    "output_BankDateTime",
}
IPG_FIELDS = {
    "output_ResponseCode",
    "output_ResponseDesc",
    "output_InsightReference",
    "output_ThirdPartyReference",
}


async def burst(url: str, bodies: Iterable[Any], timeout: float = 30) -> list[httpx.Response]:
    """POSTs every body at once, each on its own connection."""
    bodies = list(bodies)
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(url, json=body) for body in bodies)))


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, each after its parent ([pid] when it is gone)."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return [pid]


def kill_tree(served: Served) -> list[int]:
    """SIGKILLs the served command and every process it started (role supervisors, workers), leaves
    first so that no supervisor is left to replace a worker; returns the pids killed."""
    pids = descendants(served.process.pid)
    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            os.kill(pid, signal.SIGKILL)
    served.process.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids[1:]):  # orphans are reaped by init, not by us
        assert time.monotonic() < deadline, f"still alive after SIGKILL: {pids}"
        time.sleep(0.02)
    return pids


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def host_port(url: str) -> tuple[str, int]:
    parsed = httpx.URL(url)
    assert parsed.host and parsed.port
    return parsed.host, parsed.port


def raw_exchange(
    url: str, *chunks: bytes, pause: float = 0, timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    """Sends bytes as they are (with `pause` seconds between chunks) and reads one HTTP answer;
    stops sending when the server has answered already."""
    with socket.create_connection(host_port(url), timeout=timeout) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: read what it said
            if pause:
                time.sleep(pause)
                if readable(sock):
                    break
        return read_answer(sock)


def readable(sock: socket.socket) -> bool:
    """Whether the server has sent something (an answer, or a close) on `sock`, without waiting."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(timeout)  # setblocking(True) would leave later reads without a time-out


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length (what the mocks and uvicorn send)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def assert_refused_in_envelope(
    status: int, content_type: str, body: bytes, fields: set[str]
) -> dict[str, Any]:
    """A 4xx answer in the API's envelope with code -1 (404/405 may carry only code and description)."""
    assert 400 <= status < 500, (status, body[:300])
    assert content_type.startswith("application/json"), (content_type, body[:300])
    answer = json.loads(body)
    assert answer["output_ResponseCode"] == "-1", answer
    assert answer["output_ResponseDesc"].startswith("Failure"), answer
    if status not in (404, 405):
        assert set(answer) == fields, answer
    return dict(answer)
