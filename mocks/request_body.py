"""ASGI layer: reads the request body whole, within the size limit and the deadline, for connexion.

A body over `max_body_bytes` is answered 413 before it is read whole (at once when its
Content-Length says so), one that stalls for `body_timeout` seconds 408, both in the envelope and
with the connection closed. The rest of a refused body is then read and dropped, up to
`DRAIN_BYTES` or `body_timeout` (a lingering close): most clients send their whole body before
they read, and a connection closed on unread bytes is reset, which loses the answer on its way.
The body read is kept in the scope (`BODY_KEY`) for the error handlers and the journal, then
replayed to connexion.

The limit and the deadline are one layer because they are one loop over the same reads: the 413
ends it, the 408 cancels it. Two layers would have to share that loop through a second wrapped
`receive`, for no gain (each layer with its own `receive` costs every call a little more:
benchmarks/README.md, "Figures behind the code"; the API path has few layers of ours:
ConnectionFaults, RequestJournal and this one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.settings import Settings

__all__ = ["BODY_KEY", "DRAIN_BYTES", "ErrorAnswer", "RequestBody", "replaying", "send_json"]

BODY_KEY = "mpesa_atm.body"
# The most of a refused body read and dropped after the answer; past it the connection is closed.
DRAIN_BYTES = 4 * 1024 * 1024
# (scope, status, reason) -> (status, answer): the refusal in the format of the path's API.
ErrorAnswer = Callable[[Scope, int, str], tuple[int, dict[str, Any]]]


# (status, reason, whether more of the body may still come)
_Refusal = tuple[int, str, bool]


class _ClientGone(Exception):
    """The client disconnected before its body was complete: there is no one left to answer."""


class RequestBody:
    def __init__(self, app: ASGIApp, *, settings: Settings, error_answer: ErrorAnswer) -> None:
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        self.error_answer = error_answer
        self._deadlines = _BodyDeadlines(self.body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body, refusal = await self._read_body(scope, receive)
        except _ClientGone:
            return
        if refusal is not None:
            status, reason, unread = refusal
            status, answer = self.error_answer(scope, status, reason)
            if not unread:
                await send_json(send, status, answer, close=True)
                return
            # The answer leaves now (a client that reads while it sends stops sending), and the
            # connection closes once the rest of the body is in: not on unread bytes, which would
            # reset it and lose the answer for a client that reads only once it has sent it all.
            await send_json(send, status, answer, close=True, more_body=True)
            await self._drain(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        scope[BODY_KEY] = body
        scope["headers"] = _headers_for(body, scope["headers"])
        await self.app(scope, replaying(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, _Refusal | None]:
        """The whole body, or the status and reason to refuse it with, and whether more of the body
        may still come (past the limit, or stalled: the rest is unread)."""
        too_large = f"request body larger than {self.max_body_bytes} bytes"
        length = None
        waiting = False  # for a "100 Continue", which a refusal before the first read never sends
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"expect":
                waiting = value.lower() == b"100-continue"
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return b"", (400, "Content-Length is not a number", False)
            if declared > self.max_body_bytes:
                # Unread; a client that waits for "100 Continue" gets the 413 instead and sends none.
                return b"", (413, too_large, not waiting)
        chunks: list[bytes] = []
        size = 0
        task = asyncio.current_task()
        assert task is not None
        self._deadlines.start(task)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    return b"", (413, too_large, message.get("more_body", False))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not self._deadlines.stop(task):
                raise  # cancelled for another reason (the server stopping): not ours to answer
            task.uncancel()
            return b"", (408, f"the request body did not arrive within {self.body_timeout:g} s", True)
        finally:
            self._deadlines.stop(task)
        return b"".join(chunks), None

    async def _drain(self, receive: Receive) -> None:
        """Reads and drops the rest of a refused body: until it ends or the client leaves, for at
        most DRAIN_BYTES and `body_timeout` seconds."""
        dropped = 0
        task = asyncio.current_task()
        assert task is not None
        self._deadlines.start(task)
        try:
            while dropped <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect: gone
                    return
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
        except asyncio.CancelledError:
            if not self._deadlines.stop(task):
                raise
            task.uncancel()
        finally:
            self._deadlines.stop(task)


def _headers_for(body: bytes, received: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The request's headers as connexion should see them once `body` is read whole."""
    # Its length, so that connexion (which looks only at Content-Length) sees a chunked body too.
    headers = [(b"content-length", str(len(body)).encode())]
    typed = False
    for name, value in received:
        if name == b"content-type":
            headers.append((name, _lower_media_type(value)))
            typed = True
        elif name != b"content-length" and name != b"transfer-encoding":
            headers.append((name, value))
    if body and not typed:
        # RFC 9110 8.3: a body without a type may be taken for application/octet-stream. Said
        # explicitly, because connexion would validate it as JSON, then hand it on as bytes.
        headers.append((b"content-type", b"application/octet-stream"))
    return headers


def _lower_media_type(value: bytes) -> bytes:
    """`APPLICATION/JSON; charset=utf-8` -> `application/json; charset=utf-8`: media types are
    case-insensitive (RFC 9110 8.3.1), connexion's lookup of them is not."""
    media_type, separator, parameters = value.partition(b";")
    return media_type.strip().lower() + separator + parameters


class _BodyDeadlines:
    """Cancels the body reads that run past their deadline, with one timer per worker for them all.

    An `asyncio.timeout` per request costs a timer handle scheduled and cancelled on every call
    (benchmarks/README.md, "Figures behind the code"); here a read costs a dict entry, and while
    reads are under way a timer looks at them a few times per `timeout`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        self.reading[task] = loop.time() + self.timeout
        if self._timer is None:
            self._loop = loop
            self._timer = loop.call_later(self._period, self._check)

    def stop(self, task: asyncio.Task[Any]) -> bool:
        """Ends the watch of `task`'s read; True when it was cancelled for running late."""
        self.reading.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False

    @property
    def _period(self) -> float:
        return min(self.timeout / 4, 1.0)

    def _check(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for task, deadline in list(self.reading.items()):
            if deadline <= now:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()
        self._timer = self._loop.call_later(self._period, self._check) if self.reading else None


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read `body` whole, then the client's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_json(
    send: Send, status: int, payload: Any, *, close: bool = False, more_body: bool = False
) -> None:
    """Answers `payload` as JSON; `close` when the rest of an unread body must not be taken for the
    next request; `more_body` when the caller ends the answer itself (an empty last message)."""
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})
