"""The outermost layer of a mock: body size limit, control-token check, and the request journal.

It reads the body itself (refusing one over the limit before reading it all), keeps it in the scope
for the error handlers, replays it to connexion, and journals each API exchange before its answer
is sent, so a client that has its answer can already read it in the journal. Whatever escapes the
error handlers is still answered in the envelope.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.masking import masked_body, masked_text
from mpesa_atm.mocks.journal import JournalRecord
from mpesa_atm.mocks.store import Store, StoreBusy
from mpesa_atm.operations import CONTROL_PREFIX

__all__ = ["BODY_KEY", "BODY_TIMEOUT", "CALL_SCOPE", "Ingress", "replaying"]

BODY_KEY = "mpesa_atm.body"
# The scope of the call under way, as Ingress passes it on: for the handlers, which read it here
# rather than through connexion's `request` proxy (a few microseconds a call).
CALL_SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar("mpesa_atm.call_scope")
# How long a client may take to send its body once its headers are in: a stalled upload is
# answered 408 and its connection closed, instead of holding the connection for ever.
BODY_TIMEOUT = 10.0
# Control paths open to all: health checks come from load balancers and start-up scripts.
_OPEN_CONTROL = {f"{CONTROL_PREFIX}/health"}
_JOURNAL_TEXT_LIMIT = 4096
ErrorAnswer = Callable[[Scope, int, str], tuple[int, dict[str, Any]]]

log = logging.getLogger("mpesa_atm.mocks")


class _ClientGone(Exception):
    """The client disconnected before its body was complete: there is no one left to answer."""


def _journal_text(raw: bytes) -> str:
    """What the journal stores for a body: JSON text, read back with json.loads when it parses.

    A short UTF-8 body that cannot hold a password (no `assword`, and no backslash that could spell
    it in escapes) is stored as it came, which the reader parses exactly as it would a re-encoding
    of it: this keeps a JSON parse and dump per body off every call.
    """
    if len(raw) <= _JOURNAL_TEXT_LIMIT and b"assword" not in raw and b"\\" not in raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return json.dumps(masked_body(raw, limit=_JOURNAL_TEXT_LIMIT))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def _lower_media_type(value: bytes) -> bytes:
    """`APPLICATION/JSON; charset=utf-8` -> `application/json; charset=utf-8`: media types are
    case-insensitive (RFC 9110 8.3.1), connexion's lookup of them is not."""
    media_type, separator, parameters = value.partition(b";")
    return media_type.strip().lower() + separator + parameters


class _BodyDeadlines:
    """Cancels the body reads that run past their deadline, with one timer per worker for them all.

    An `asyncio.timeout` per request costs a timer handle scheduled and cancelled on every call
    (about 50 us of CPU a call, measured); here a read costs a dict entry, and while reads are under
    way a timer looks at them a few times per `timeout`."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        self.reading[task] = loop.time() + self.timeout
        if self._timer is None or self._loop is not loop:  # none yet, or that loop is gone
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
            if task.get_loop() is not self._loop:  # left by a loop that was closed (tests)
                del self.reading[task]
            elif deadline <= now:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()
        self._timer = self._loop.call_later(self._period, self._check) if self.reading else None


class Ingress:
    def __init__(
        self,
        app: ASGIApp,
        *,
        role: str,
        store: Store,
        max_body_bytes: int,
        control_token: str | None,
        error_answer: ErrorAnswer,
        operations: dict[str, str],
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.role = role
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.control_token = control_token
        self.error_answer = error_answer
        self.operations = operations  # path -> operationId
        self.body_timeout = BODY_TIMEOUT if body_timeout is None else body_timeout
        self._deadlines = _BodyDeadlines(self.body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_control = path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")
        if is_control and path not in _OPEN_CONTROL and not self._authorised(scope):
            detail = "this mock's control API needs 'Authorization: Bearer <control token>'"
            await _send_json(send, 401, {"error": "Unauthorized", "detail": detail})
            return
        started = time.perf_counter()
        try:
            body, refusal = await self._read_body(scope, receive)
        except _ClientGone:
            return
        if refusal is not None:
            status, answer = self.error_answer(scope, *refusal)
            if not is_control:
                await self._journal(scope, body, status, _json_bytes(answer), started)
            await _send_json(send, status, answer, close=True)
            return
        scope[BODY_KEY] = body
        # The body is read whole now: say its length, so that connexion (which looks only at
        # Content-Length) sees a chunked body too.
        headers = [(b"content-length", str(len(body)).encode())]
        typed = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                headers.append((name, _lower_media_type(value)))
                typed = True
            elif name != b"content-length" and name != b"transfer-encoding":
                headers.append((name, value))
        if body and not typed:
            # RFC 9110 8.3: a body without a type may be taken for application/octet-stream. Said
            # explicitly, because connexion would validate it as JSON, then hand it on as bytes.
            headers.append((b"content-type", b"application/octet-stream"))
        scope["headers"] = headers
        replay = replaying(body, receive)

        status = 0
        chunks: list[bytes] = []
        held: Message | None = None  # an API answer's start, sent with its body

        async def journalled_send(message: Message) -> None:
            nonlocal status, held
            if message["type"] == "http.response.start":
                status = message["status"]
                if not is_control:
                    # Held until the body is journalled: headers and body then leave together, and
                    # the client reads them in one go (not the headers, then a turn later the body).
                    held = message
                    return
            elif message["type"] == "http.response.body" and not is_control:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._journal(scope, body, status, b"".join(chunks), started)
                if held is not None:
                    await send(held)
                    held = None
            await send(message)

        CALL_SCOPE.set(scope)
        try:
            await self.app(scope, replay, journalled_send)
        except Exception as exc:
            # Whatever escaped the error handlers (a bug of the mock): logged, and answered in the
            # envelope unless the answer had begun. Not raised again: the server's own last-resort
            # handler would answer a bare 500.
            log.exception("%s %s failed", scope["method"], path)
            if status == 0 or held is not None:  # nothing of the answer sent yet
                status, answer = self._internal_error(scope, exc)
                if not is_control:
                    await self._journal(scope, body, status, _json_bytes(answer), started)
                await _send_json(send, status, answer, close=True)

    def _internal_error(self, scope: Scope, exc: Exception) -> tuple[int, dict[str, Any]]:
        reason = f"internal error of the mock ({type(exc).__name__})"
        try:
            return self.error_answer(scope, 500, reason)
        except Exception:  # the envelope builder failed on this very request: the bare envelope
            return 500, {"output_ResponseCode": "-1", "output_ResponseDesc": f"Failure: {reason}"}

    def _authorised(self, scope: Scope) -> bool:
        if not self.control_token:
            return True
        expected = f"Bearer {self.control_token}".encode()
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, expected)
        return False

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, tuple[int, str] | None]:
        """The whole body, or the status and reason to refuse it with (past the limit: unread)."""
        too_large = (413, f"request body larger than {self.max_body_bytes} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return b"", (400, "Content-Length is not a number")
                if declared > self.max_body_bytes:
                    return b"", too_large
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
                    return b"", too_large
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not self._deadlines.stop(task):
                raise  # cancelled for another reason (the server stopping): not ours to answer
            task.uncancel()
            return b"", (408, f"the request body did not arrive within {self.body_timeout:g} s")
        finally:
            self._deadlines.stop(task)
        return b"".join(chunks), None

    async def _journal(self, scope: Scope, body: bytes, status: int, answer: bytes, started: float) -> None:
        path = scope["path"]
        url = path
        if scope["query_string"]:
            url += "?" + masked_text(scope["query_string"].decode("latin-1"))
        record = JournalRecord(
            role=self.role,
            direction="inbound",
            operation=self.operations.get(path),
            method=scope["method"],
            url=url,
            status=status,
            request=_journal_text(body),
            response=_journal_text(answer),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        try:
            # In the append that follows this turn of the event loop, with the other entries of the
            # turn; the answer waits for it.
            await self.store.journal_in_next_write(record)
        except (StoreBusy, OSError) as exc:
            # The answer (committed already, if a success) matters more than its journal entry.
            log.warning("journal entry lost: %s", exc)


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


async def _send_json(send: Send, status: int, payload: Any, *, close: bool = False) -> None:
    body = _json_bytes(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of an unread body must not be taken for the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
