"""The proxy's own way to the upstream (proxy/wire.py through forward.Upstream) against real sockets:
upstreams written byte by byte, as HTTP/1.1 allows an answer to come (a length, chunks, until the
close, after a 100 Continue) and as a broken one ends (reset, closed, garbage, silent), each told in
the 502's words with the right code: -7 when nothing reached the upstream, -6 when it may have."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from mpesa_atm.codes import ResponseCode
from mpesa_atm.proxy import wire
from mpesa_atm.proxy.forward import Answered, Unanswered, Upstream
from mpesa_atm.transport import Network

ANSWER = b'{"output_ResponseCode":"0","output_ResponseDesc":"Success"}'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def answering(*parts: bytes, close: bool = False) -> Handler:
    """An upstream that answers each request of a connection with `parts`, written one by one."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                for part in parts:
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


def exchange(
    handler: Handler, posts: int = 1, timeout: float = 5.0
) -> tuple[list[Answered | Unanswered], int]:
    """`posts` POSTs one after the other through an Upstream to a server running `handler`; the
    outcomes and how many connections the server was given."""

    async def main() -> tuple[list[Answered | Unanswered], int]:
        connections = 0

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await handler(reader, writer)

        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        upstream = Upstream(f"http://127.0.0.1:{port}", Network(), timeout)
        upstream.open()
        outcomes = []
        try:
            for number in range(posts):
                body = b'{"input_TransactionID":"T%d"}' % number
                url = upstream.url("/token-generation", "a=1")
                outcomes.append(await upstream.post(url, [("Content-Type", "application/json")], body))
        finally:
            await upstream.close()
            server.close()
        return outcomes, connections

    return asyncio.run(main())


def test_an_answer_with_its_length_comes_as_it_came_and_the_connection_is_kept_for_the_next() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Two: a\r\nX-Two: b\r\n"
    outcomes, connections = exchange(answering(head + b"Content-Length: %d\r\n\r\n" % len(ANSWER), ANSWER), 3)
    assert all(isinstance(o, Answered) for o in outcomes) and connections == 1
    first = outcomes[0]
    assert isinstance(first, Answered)
    assert (first.status, first.reason, first.body) == (200, "OK", ANSWER)
    assert [h for h in first.headers if h[0] == "X-Two"] == [("X-Two", "a"), ("X-Two", "b")]
    assert all(name.lower() != "content-length" for name, _ in first.headers)  # the proxy sets its own


def test_a_chunked_answer_a_compressed_one_and_one_after_100_continue_come_whole() -> None:
    chunked = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    chunked += [b"%x\r\n%s\r\n" % (len(part), part) for part in (ANSWER[:10], ANSWER[10:])] + [b"0\r\n\r\n"]
    packed = gzip.compress(ANSWER)
    compressed = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    continued = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(
        ANSWER
    )
    for handler, status, body in (
        (answering(*chunked), 200, ANSWER),
        (answering(compressed, packed), 200, packed),  # as it came: the client decodes it
        (answering(continued, ANSWER), 201, ANSWER),
    ):
        (outcome,), _ = exchange(handler)
        assert isinstance(outcome, Answered) and (outcome.status, outcome.body) == (status, body)


def test_an_answer_without_length_ends_at_the_close_and_its_connection_is_not_reused() -> None:
    outcomes, connections = exchange(answering(b"HTTP/1.1 200 OK\r\n\r\n", ANSWER, close=True), 2)
    assert [o.body for o in outcomes if isinstance(o, Answered)] == [ANSWER, ANSWER]
    assert connections == 2


def test_an_upstream_that_closes_its_idle_connection_costs_the_next_call_nothing() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(ANSWER)
    outcomes, connections = exchange(answering(head, ANSWER, close=True), 3)
    assert all(isinstance(o, Answered) for o in outcomes) and connections == 3


@pytest.mark.parametrize(
    ("parts", "words"),
    [
        ((), "the connection was closed without an answer"),
        (
            (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"{"),
            "the connection was closed without an answer",
        ),
        ((b"SMTP ready\r\n",), "not HTTP/1.1"),
    ],
    ids=["closed", "cut short", "garbage"],
)
def test_a_connection_that_ends_without_a_whole_answer_is_minus_6_the_outcome_unknown(
    parts: tuple[bytes, ...], words: str
) -> None:
    (outcome,), _ = exchange(answering(*parts, close=True))
    assert isinstance(outcome, Unanswered) and outcome.code is ResponseCode.REQUEST_TIME_OUT
    assert words in outcome.reason


def test_a_reset_after_the_request_is_minus_6_in_its_words() -> None:
    async def resets(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    (outcome,), _ = exchange(resets)
    assert isinstance(outcome, Unanswered) and outcome.code is ResponseCode.REQUEST_TIME_OUT
    assert outcome.reason.startswith(("connection reset by peer", "the connection was closed"))


def test_a_silent_upstream_is_minus_6_after_the_time_given_and_the_next_call_gets_a_new_connection() -> None:
    calls = 0

    async def silent_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        try:
            while True:
                await read_request(reader)
                calls += 1
                if calls > 1:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    outcomes, connections = exchange(silent_once, 2, timeout=0.3)
    assert isinstance(outcomes[0], Unanswered) and outcomes[0].timed_out
    assert (
        outcomes[0].reason == "no answer within 0.3 s" and outcomes[0].code is ResponseCode.REQUEST_TIME_OUT
    )
    assert isinstance(outcomes[1], Answered) and connections == 2  # the silent one is not reused


def test_nothing_listening_is_minus_7_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused

        async def main() -> Answered | Unanswered:
            upstream = Upstream(f"http://127.0.0.1:{port}", Network(), 5)
            upstream.open()
            try:
                return await upstream.post(upstream.url("/token-generation"), [], b"{}")
            finally:
                await upstream.close()

        outcome = asyncio.run(main())
    assert isinstance(outcome, Unanswered) and outcome.code is ResponseCode.SYSTEM_TOO_BUSY
    assert outcome.reason == "connection refused"


def test_the_request_carries_the_clients_headers_the_upstreams_host_and_the_exact_body() -> None:
    seen: list[bytes] = []

    async def records(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await read_request(reader)
        seen.extend([head, body])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    (outcome,), _ = exchange(records)
    assert isinstance(outcome, Answered)
    head, body = seen
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /token-generation?a=1 HTTP/1.1"
    assert any(line.startswith("Host: 127.0.0.1:") for line in lines)
    assert "Content-Type: application/json" in lines and body == b'{"input_TransactionID":"T0"}'


def test_an_environment_proxy_between_takes_httpx_as_fuzz_and_verify_do_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)

    def way(url: str) -> str:
        upstream = Upstream(url, Network(), 5)
        upstream.open()
        try:
            return "httpx" if upstream._client is not None else "own"
        finally:
            asyncio.run(upstream.close())

    assert way("https://ipg.example") == "own"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert (way("https://ipg.example"), way("http://ipg.example")) == ("httpx", "own")
    monkeypatch.setenv("NO_PROXY", "ipg.example")
    assert way("https://ipg.example") == "own"


def test_a_pool_full_of_connections_the_upstream_closed_still_keeps_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "KEPT_IDLE", 2)
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ANSWER)

    async def main() -> tuple[int, int]:
        served: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            served.append(writer)
            await answering(closing, ANSWER)(reader, writer)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        target = urlsplit(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        pool = wire.Pool(target, None)
        try:
            # Two connections kept, then closed by the upstream while idle.
            await asyncio.gather(*(pool.post("/", [], b"{}", 5) for _ in range(2)))
            for writer in served:
                writer.close()
            await asyncio.sleep(0.1)
            await pool.post("/", [], b"{}", 5)  # a new connection, kept though the pool was "full"
            await pool.post("/", [], b"{}", 5)  # reuses it
            return len(served), sum(not kept.closed for kept in pool._idle)
        finally:
            pool.close()
            server.close()

    assert asyncio.run(main()) == (3, 1)
