"""Nothing a call waits for blocks the worker's event loop: while another process holds the
database's writer lock, the worker still answers at once what needs no write; reading the journal
costs what is read, not the journal's size."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from mpesa_atm.mocks.records import JournalRecord
from mpesa_atm.mocks.store import Store
from tests.fixtures.mocks import DOCUMENT_GENERATION
from tests.reliability.helpers import host_port, read_answer

JSON = {"Content-Type": "application/json"}

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def _send(url: str, method: str, path: str, body: dict[str, object]) -> socket.socket:
    """The request sent on a connection of its own, its answer left to read."""
    raw = json.dumps(body).encode()
    connection = socket.create_connection(host_port(url), timeout=10)
    connection.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(raw)}\r\n\r\n".encode()
        + raw
    )
    return connection


@pytest.mark.network
def test_while_another_process_holds_the_writer_lock_the_worker_answers_what_needs_no_write(serve):
    served = serve(role="bank")
    url = served.bank_url
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{served.db_path}.lock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        # A Token Generation, which needs the lock: it waits for its turn, up to the busy timeout (5 s).
        body = {**DOCUMENT_GENERATION, "input_TransactionID": uuid.uuid4().hex[:20]}
        waiting = _send(url, "POST", "/token-generation", body)
        with httpx.Client(base_url=url, timeout=5) as client:
            # Sent after it, on other connections: the worker reads them after it, so from the
            # second round on the Token Generation is certainly waiting for the lock.
            for _ in range(3):
                started = time.monotonic()
                refused = client.post("/token-generation", content=b"{}", headers=JSON)
                health = client.get("/_harness/health")
                elapsed = time.monotonic() - started
                assert (refused.status_code, health.status_code) == (400, 200)
                assert refused.json()["output_ResponseCode"] == "-1"
                assert elapsed < 0.5, f"{elapsed:.2f} s while the lock was held"
        waiting.setblocking(False)
        with pytest.raises(BlockingIOError):  # still no answer: it waits for its turn
            waiting.recv(1)
        waiting.setblocking(True)
    finally:
        holder.communicate("")  # the holder exits, and its lock goes with it
    with waiting:
        status, _, answer = read_answer(waiting)
    assert status == 200
    assert json.loads(answer)["output_ResponseCode"] == "0"  # written once the lock was free


def _records(count: int, operation: str = "token_generation") -> list[JournalRecord]:
    return [
        JournalRecord(
            "bank",
            "inbound",
            operation if n % 2 else "other",
            "POST",
            "/token-generation",
            200,
            json.dumps({"n": n}),
            "{}",
            1.0,
        )
        for n in range(count)
    ]


def test_a_journal_read_costs_what_it_returns_not_the_journals_size(tmp_path):
    store = Store(str(tmp_path / "big.sqlite3"), journal_limit=20_000)
    try:
        for _start in range(0, 30_000, 1000):  # past the limit: a full older file and a current one
            asyncio.run(store.journal_add_many(_records(1000)))
        size = sum(os.path.getsize(path) for path in store._journal.paths("bank") if os.path.exists(path))
        before = _bytes_read()
        entries = asyncio.run(store.journal("bank", limit=10))
        read = _bytes_read() - before
        assert [entry.request for entry in entries] == [{"n": n} for n in range(999, 989, -1)]
        assert read < 2 * 64 * 1024 < size / 20, read  # a block from the end of a 5 MB journal
        for limit in (1, 10, 999, 25_000):
            for operation in (None, "token_generation"):
                shown = asyncio.run(store.journal("bank", operation=operation, limit=limit))
                got = [entry.as_json() for entry in shown]
                assert got == _read_whole(store, operation, limit), (limit, operation)
    finally:
        store.close()


def _bytes_read() -> int:
    """What this process has read through read(2) and pread(2) so far (Linux's rchar)."""
    with open("/proc/self/io") as io:
        fields = dict(line.split(": ") for line in io.read().splitlines())
    return int(fields["rchar"])


def _read_whole(store: Store, operation: str | None, limit: int) -> list[dict[str, object]]:
    """The journal as it was read before: both files whole, the newest journal_limit lines."""
    data = b""
    for path in reversed(store._journal.paths("bank")):
        if os.path.exists(path):
            with open(path, "rb") as file:
                data += file.read()
    found = []
    for line in reversed(data.split(b"\n")[-store._journal.limit - 1 :]):
        if not line or len(found) >= limit:
            continue
        values = json.loads(line)
        if operation is None or values["operation"] == operation:
            values["request"], values["response"] = (
                json.loads(values["request"]),
                json.loads(values["response"]),
            )
            found.append(values)
    return found


@pytest.mark.network
def test_a_database_out_of_reach_stalls_neither_the_calls_nor_the_control_api_of_the_worker(
    serve, postgres_server, tmp_path
):
    """On PostgreSQL a call after a change of rules or modes reads them again, and a control call
    reads or writes the store; with the database out of reach each waits up to the busy timeout, off
    the event loop, and is answered as the store's state: -7, or 503 with Retry-After."""
    name = postgres_server.create_database()
    config = tmp_path / "busy.toml"
    config.write_text("busy_timeout = 2.0\n")
    served = serve("--config", str(config), role="bank", db_path=postgres_server.url(name))
    url = served.bank_url
    with httpx.Client(base_url=url, timeout=10) as client:
        # A change of modes moves the config version: the next call reads the rules and modes again.
        assert client.put("/_harness/modes", json={"magic_values": False}).status_code == 200
        postgres_server.drop_database(name)  # every connection ended, and none can be made again
        # The config poller (every 0.2 s) finds the pool's connection dead and the pool drops it: from
        # then on a read waits for a new connection, up to the busy timeout.
        time.sleep(1.0)
        for method, path, body in (
            ("POST", "/token-generation", {**DOCUMENT_GENERATION, "input_TransactionID": "UNREACHABLE1"}),
            ("PUT", "/_harness/modes", {"offline": True}),
        ):
            waiting = _send(url, method, path, body)
            time.sleep(0.2)  # read by the worker, which waits for the store (2 s): nothing to await
            started = time.monotonic()
            health = client.get("/_harness/health")
            elapsed = time.monotonic() - started
            assert health.status_code == 200
            assert elapsed < 0.5, f"{elapsed:.2f} s while the worker waited for the store ({path})"
            with waiting:
                status, headers, answer = read_answer(waiting)
            if path == "/token-generation":
                assert status == 200 and json.loads(answer)["output_ResponseCode"] == "-7"
            else:
                assert status == 503, answer
                assert headers["retry-after"] == "1"
                assert "out of reach" in json.loads(answer)["detail"]
