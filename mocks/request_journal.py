"""ASGI layer: journals each API exchange before its answer leaves, and answers what escaped the rest.

An API answer's start is held until its body is journalled, then both are sent: a client that has
its answer can already read it in the journal, and reads headers and body in one go. An answer whose
entry the journal cannot take (a full disk) is not sent: -7 System Too Busy goes instead, so that
every answer sent is in the journal. Control calls are not journalled.

It is also the mock's last resort: whatever escaped the error handlers (a bug of the mock) is
logged and answered in the envelope, and journalled, unless some of the answer already left. Only
this layer knows that (it holds the start), so the last resort is here rather than in a layer of
its own; connexion's ServerErrorMiddleware, outside it, is left for a failure of this layer.

An answer that a connection fault withholds is journalled as what the client got instead:
status null (or the malformed fault's 200) and the response
`{"connection_fault": ..., "sent": ..., "withheld": <the answer the mock made>}`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.errors import StoreBusy
from mpesa_atm.masking import MASK, PASSWORD_FIELD, Secrets, masked_body, masked_text
from mpesa_atm.mocks.background import OncePerKind
from mpesa_atm.mocks.connection_faults import sent_instead
from mpesa_atm.mocks.fastpath import PARSED_KEY
from mpesa_atm.mocks.faults import SLOT_KEY
from mpesa_atm.mocks.records import JournalRecord
from mpesa_atm.mocks.request_body import BODY_KEY, ErrorAnswer, send_json
from mpesa_atm.mocks.storage import BUSY, Storage
from mpesa_atm.operations import CONTROL_PREFIX

__all__ = ["RequestJournal"]

_JOURNAL_TEXT_LIMIT = 4096

log = logging.getLogger("mpesa_atm.mocks")


class RequestJournal:
    def __init__(
        self,
        app: ASGIApp,
        *,
        role: str,
        store: Storage,
        error_answer: ErrorAnswer,
        operations: dict[str, str],
        busy_answer: Callable[[Scope], dict[str, Any]] | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        self.app = app
        # The known passwords, masked by value in each entry: whatever the field, the encoding or
        # the escapes a body spelt them in (masked by name as well, for the passwords not known).
        self.secrets = secrets or Secrets(tuple)
        self.role = role
        self.store = store
        self.error_answer = error_answer
        # The -7 System Too Busy that replaces an answer whose journal entry cannot be written.
        self.busy_answer = busy_answer or (lambda scope: error_answer(scope, 503, BUSY)[1])
        self.lost = OncePerKind("the request journal", traceback=False)
        self.operations = operations  # path -> operationId

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_control = path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")
        started = time.perf_counter()
        status = 0
        chunks: list[bytes] = []
        held: Message | None = None  # an API answer's start, sent with its body
        journalled = False
        replaced = False  # the answer was not journalled: -7 went instead

        async def journalled_send(message: Message) -> None:
            nonlocal status, held, journalled, replaced
            if message["type"] == "http.response.start":
                status = message["status"]
                if not is_control:
                    # Held until the body is journalled: headers and body then leave together, and
                    # the client reads them in one go (not the headers, then a turn later the body).
                    held = message
                    return
            elif message["type"] == "http.response.body" and not is_control:
                if replaced:
                    return  # the rest of an answer that was not journalled, never sent
                if not journalled:
                    chunks.append(message.get("body", b""))
                    # Whole at its last message, or when its first is as long as its start says
                    # (a refused body's answer, whose last message waits for the body's drain).
                    if not message.get("more_body", False) or (held is not None and _is_whole(held, chunks)):
                        journalled = True
                        if not await self._journal(scope, status, b"".join(chunks), started):
                            replaced = True
                            held = None
                            await send_json(send, 200, self.busy_answer(scope))
                            return
                if held is not None:
                    await send(held)
                    held = None
            await send(message)

        try:
            await self.app(scope, receive, journalled_send)
        except Exception as exc:
            # Not raised again: the server's own last-resort handler would answer a bare 500.
            log.exception("%s %s failed", scope["method"], self.secrets.masked(path))
            if status == 0 or held is not None:  # nothing of the answer sent yet
                status, answer = self._internal_error(scope, exc)
                if not is_control:
                    await self._journal(scope, status, json.dumps(answer).encode(), started)
                await send_json(send, status, answer, close=True)

    def _internal_error(self, scope: Scope, exc: Exception) -> tuple[int, dict[str, Any]]:
        reason = f"internal error of the mock ({type(exc).__name__})"
        try:
            return self.error_answer(scope, 500, reason)
        except Exception:  # the envelope builder failed on this very request: the bare envelope
            return 500, {"output_ResponseCode": "-1", "output_ResponseDesc": f"Failure: {reason}"}

    async def _journal(self, scope: Scope, status: int | None, answer: bytes, started: float) -> bool:
        """Journals the exchange; False when the journal could not take it (a full disk), and then
        the answer must not leave: every answer sent is in the journal (docs/reliability.md)."""
        path = scope["path"]
        url = path
        if scope["query_string"]:
            url += "?" + masked_text(scope["query_string"].decode("latin-1"))
        url = self.secrets.masked(url)
        response = _journal_text(answer)
        instead = sent_instead(scope) if scope.get(SLOT_KEY) else None
        if instead is not None:  # the client never gets this answer: say what it got
            status = instead.status
            sent = None if instead.body is None else instead.body.decode()
            response = json.dumps(
                {"connection_fault": instead.fault, "sent": sent, "withheld": _parsed(response)}
            )
        record = JournalRecord(
            role=self.role,
            direction="inbound",
            operation=self.operations.get(path),
            method=scope["method"],
            url=url,
            status=status,
            # The body as read by RequestBody, inside this layer; none when it refused the body.
            request=self.secrets.masked(_request_text(scope)),
            response=self.secrets.masked(response),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        try:
            # In the append that follows this turn of the event loop, with the other entries of the
            # turn; the answer waits for it.
            await self.store.journal_in_next_write(record)
        except (StoreBusy, OSError) as exc:
            # Told once a kind (the store counts the entries and says when the journal takes them
            # again), not once a call: a full disk fails every call until space is back.
            self.lost.log(exc)
            return False
        except Exception:  # a bug of the journal's, not of the call: the answer goes, with a traceback
            log.exception("journal entry lost")
        return True


def _is_whole(start: Message, chunks: list[bytes]) -> bool:
    """Whether the body sent so far is as long as the answer's start declared."""
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-length":
            return sum(map(len, chunks)) >= int(value)
    return False


def _request_text(scope: Scope) -> str:
    """The request body for the journal: as `_journal_text` makes it, but a valid body with a
    password, which the fast path parsed already, is masked as it was parsed (a flat object of
    strings) instead of being parsed again: a fifth of a redemption's time in the journal."""
    parsed = scope.get(PARSED_KEY)
    if isinstance(parsed, dict) and PASSWORD_FIELD in parsed:
        return orjson.dumps({**parsed, PASSWORD_FIELD: MASK}).decode()
    return _journal_text(scope.get(BODY_KEY, b""))


def _journal_text(raw: bytes) -> str:
    """What the journal stores for a body: JSON text, read back with json.loads when it parses.

    A short UTF-8 body that cannot hold a password (no `assword`, and no backslash that could spell
    it in escapes) is stored as it came, which the reader parses exactly as it would a re-encoding
    of it: this keeps a JSON parse and dump per body off every call. A NUL byte, which PostgreSQL's
    text refuses (and only a body that is not JSON holds), is stored as JSON's escape of it.
    """
    if len(raw) <= _JOURNAL_TEXT_LIMIT and b"assword" not in raw and b"\\" not in raw and b"\x00" not in raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return json.dumps(masked_body(raw, limit=_JOURNAL_TEXT_LIMIT))


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
