"""The outermost layer of a mock: body size limit, control-token check, and the request journal.

It reads the body itself (refusing one over the limit before reading it all), keeps it in the scope
for the error handlers, replays it to connexion, and journals each API exchange before its last byte
is sent, so a client that has its answer can already read it in the journal.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.clients import MASK, mask_password
from mpesa_atm.mocks.store import Store

__all__ = ["BODY_KEY", "CONTROL_PREFIX", "Ingress", "masked_text"]

BODY_KEY = "mpesa_atm.body"
CONTROL_PREFIX = "/_harness"
# Control paths open to all: health checks come from load balancers and start-up scripts.
_OPEN_CONTROL = {"/_harness/health"}
_JOURNAL_TEXT_LIMIT = 4096
_PASSWORD_IN_TEXT = re.compile(r'("input_Password"\s*:\s*")((?:[^"\\]|\\.)*)(")')

ErrorAnswer = Callable[[Scope, int, str], tuple[int, dict[str, Any]]]


def masked_text(raw: bytes) -> Any:
    """A request body for the journal: parsed JSON with the password masked, else masked text."""
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = raw[:_JOURNAL_TEXT_LIMIT].decode("utf-8", errors="replace")
        return _PASSWORD_IN_TEXT.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return mask_password(parsed)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


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
    ) -> None:
        self.app = app
        self.role = role
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.control_token = control_token
        self.error_answer = error_answer
        self.operations = operations  # path -> operationId

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
        body, refusal = await self._read_body(scope, receive)
        if refusal is not None:
            status, answer = self.error_answer(scope, *refusal)
            if not is_control:
                self._journal(scope, body, status, answer, started)
            await _send_json(send, status, answer, close=True)
            return
        scope[BODY_KEY] = body
        # The body is read whole now: say its length, so that connexion (which looks only at
        # Content-Length) sees a chunked body too.
        scope["headers"] = [
            (name, value)
            for name, value in scope["headers"]
            if name not in (b"content-length", b"transfer-encoding")
        ] + [(b"content-length", str(len(body)).encode())]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if is_control:
            await self.app(scope, replay, send)
            return

        status = 0
        chunks: list[bytes] = []

        async def journalled_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answer = masked_text(b"".join(chunks))
                    self._journal(scope, body, status, answer, started)
            await send(message)

        await self.app(scope, replay, journalled_send)

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
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), None

    def _journal(self, scope: Scope, body: bytes, status: int, answer: Any, started: float) -> None:
        path = scope["path"]
        self.store.journal_add(
            role=self.role,
            direction="inbound",
            operation=self.operations.get(path),
            method=scope["method"],
            url=path + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else ""),
            status=status,
            request=json.dumps(masked_text(body)),
            response=json.dumps(answer),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )


async def _send_json(send: Send, status: int, payload: Any, *, close: bool = False) -> None:
    body = _json_bytes(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of an unread body must not be taken for the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
