"""HTTP/1.1 to the upstream on the event loop's own connections: one request per connection at a time,
kept alive in a pool, the answer parsed by httptools (uvicorn's parser, in C). The proxy's forwarding
went through httpx, whose per-request machinery (its client, httpcore's pool and anyio streams) cost
most of the proxy's CPU a call; this does the one thing the proxy needs: a POST with the client's
headers and body, and the answer as it came.

What went wrong comes back as an exception of this module's (`NoConnection`: nothing reached the
upstream; `BrokenAnswer`: the request went and no whole answer came; `NoAnswerInTime`), whose words
forward.py turns into the proxy's 502.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult

import httptools

__all__ = ["BrokenAnswer", "NoAnswerInTime", "NoConnection", "Pool", "RawAnswer"]

# Idle connections kept for reuse (httpx's pool kept 100 as well).
KEPT_IDLE = 100


class NoConnection(Exception):
    """No connection to the upstream (refused, no such host, TLS refused, not in time): the request
    was not sent. `timed_out`: the connection was not made in time."""

    def __init__(self, cause: BaseException | None, timed_out: bool = False) -> None:
        super().__init__(str(cause) if cause is not None else "could not connect in time")
        self.cause = cause
        self.timed_out = timed_out
        if cause is not None:
            self.__cause__ = cause


class BrokenAnswer(Exception):
    """The request was sent and the connection ended (closed, reset, unreadable HTTP) before a whole
    answer came: whether the upstream acted on it is unknown."""

    def __init__(self, words: str, cause: BaseException | None = None) -> None:
        super().__init__(words)
        if cause is not None:
            self.__cause__ = cause


class NoAnswerInTime(Exception):
    """The request was sent and no whole answer came in the time given."""


@dataclass(frozen=True)
class RawAnswer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection to the upstream, one exchange at a time: `answer()` is a future the parser
    completes when the whole answer has come; the connection is reusable when the upstream keeps it
    alive and nothing is left unread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[RawAnswer] | None = None
        self.keep_alive = False
        self._reset()

    def _reset(self) -> None:
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.status = 0
        self.informational = False

    # asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(BrokenAnswer(f"the upstream's answer is not HTTP/1.1 ({exc})", exc))

    def eof_received(self) -> bool:
        return False  # closed: an answer read until the close is complete (connection_lost says)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.status and not self.informational and self._ends_at_close():
            waiter.set_result(self._answer())  # no length, not chunked: the body ends at the close
        elif isinstance(exc, ConnectionResetError):
            waiter.set_exception(BrokenAnswer("connection reset by peer", exc))
        elif exc is not None:
            waiter.set_exception(BrokenAnswer(f"the connection broke without an answer ({exc})", exc))
        else:
            waiter.set_exception(BrokenAnswer("the connection was closed without an answer"))

    # httptools' callbacks -----------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.informational = 100 <= self.status < 200

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.informational:  # 100 Continue and the like: the answer is still to come
            self._reset()
            return
        waiter = self.waiter
        self.keep_alive = self.parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result(self._answer())
        else:  # an answer nobody asked for: the connection is not to be trusted
            self.keep_alive = False

    # ----------------------------------------------------------------------------------------------------

    def _ends_at_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _answer(self) -> RawAnswer:
        return RawAnswer(
            self.status,
            self.reason.decode("latin-1"),
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.headers],
            b"".join(self.chunks),
        )

    def _fail(self, error: BaseException) -> None:
        self.keep_alive = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes) -> asyncio.Future[RawAnswer]:
        self._reset()
        self.keep_alive = False
        self.waiter = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(request)
        return self.waiter


class Pool:
    """Connections to one upstream (`target`: its scheme, host and port), made as needed and kept
    alive for reuse. `ssl_context` for an https:// upstream."""

    def __init__(self, target: SplitResult, ssl_context: ssl.SSLContext | None) -> None:
        self.host = target.hostname or ""
        self.tls = target.scheme == "https"
        self.port = target.port or (443 if self.tls else 80)
        self.ssl_context = ssl_context if self.tls else None
        default = 443 if self.tls else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if self.port == default else f"{name}:{self.port}"
        self._idle: collections.deque[_Connection] = collections.deque()

    async def post(
        self, target: str, headers: list[tuple[str, str]], body: bytes, timeout: float
    ) -> RawAnswer:
        """POSTs `body` to `target` (path and query) with `headers` (Host and Content-Length are the
        pool's), the whole exchange in `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = await self._connection(loop, timeout)
        head = [f"POST {target} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in headers]
        head.append("\r\n")
        request = "".join(head).encode("latin-1") + body
        waiter = connection.send(request)
        timer = loop.call_at(deadline, _time_out, waiter)
        reused = False
        try:
            answer = await waiter
            reused = connection.keep_alive and not connection.closed
            return answer
        finally:
            timer.cancel()
            connection.waiter = None
            if reused:
                self._keep(connection)
            else:
                connection.close()

    def _keep(self, connection: _Connection) -> None:
        """`connection` kept for the next call; those the upstream closed meanwhile are let go first
        (they stay in the deque until then: a full one of them would keep no connection)."""
        if len(self._idle) >= KEPT_IDLE:
            self._idle = collections.deque(kept for kept in self._idle if not kept.closed)
        if len(self._idle) < KEPT_IDLE:
            self._idle.append(connection)
        else:
            connection.close()

    async def _connection(self, loop: asyncio.AbstractEventLoop, timeout: float) -> _Connection:
        while self._idle:
            connection = self._idle.pop()  # the latest used: the likeliest still open
            if not connection.closed:
                return connection
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError as exc:
            raise NoConnection(None, timed_out=True) from exc
        except (OSError, ssl.SSLError) as exc:
            raise NoConnection(exc) from exc
        return connection

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _time_out(waiter: asyncio.Future[RawAnswer]) -> None:
    if not waiter.done():
        waiter.set_exception(NoAnswerInTime())
