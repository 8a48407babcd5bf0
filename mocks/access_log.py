"""ASGI layer of `serve --access-log`: one line per call on stdout, added only when the setting is on.

A line: when the call arrived (UTC), role, method, path, HTTP status, output_ResponseCode (`-` when
the answer has none), milliseconds until the answer ended; and, when a connection fault broke the
answer, what the client got instead, e.g.

    2025-06-01T10:00:00.123+00:00 ipg POST /token-redemption 200 0 4.1 ms
    2025-06-01T10:00:01.456+00:00 ipg POST /token-redemption - - 2.0 ms no answer (reset)
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.masking import Secrets
from mpesa_atm.mocks.connection_faults import sent_instead
from mpesa_atm.operations import CONTROL_PREFIX

__all__ = ["AccessLog"]

# output_ResponseCode leads every envelope (codes.py): the first bytes of the body are enough.
_CODE = re.compile(rb'"output_ResponseCode"\s*:\s*"([^"\\]{1,16})"')
_SEARCHED = 4096


def _to_stdout(line: str) -> None:
    try:
        sys.stdout.write(line)
        sys.stdout.flush()  # a line at a time, also when stdout is a file or a pipe
    except (OSError, ValueError):  # stdout closed or gone: the call matters more than its line
        pass


class AccessLog:
    def __init__(
        self,
        app: ASGIApp,
        *,
        role: str,
        write: Callable[[str], None] = _to_stdout,
        secrets: Secrets | None = None,
    ) -> None:
        self.app = app
        self.role = role
        self.write = write
        self.secrets = secrets or Secrets(tuple)  # a password in a path is masked too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = datetime.now(UTC)
        started = time.perf_counter()
        status: int | None = None
        head = b""  # the body's first bytes, where the response code is
        path: str = scope["path"]
        # The control API's answers are no envelopes (the journal's quote some): no code to show.
        searched = 0 if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/") else _SEARCHED

        async def logged_send(message: Message) -> None:
            nonlocal status, head
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(head) < searched:
                head += message.get("body", b"")[:searched]
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            milliseconds = (time.perf_counter() - started) * 1000
            found = _CODE.search(head, 0, searched)
            code = found.group(1).decode() if found else "-"
            note = ""
            instead = sent_instead(scope)
            if instead is not None:  # what the client saw, not the answer the mock made
                status, code = instead.status, "-"
                kind = "answer cut short" if instead.body else "no answer"
                note = f" {kind} ({instead.fault})"
            shown = "-" if status is None else status
            self.write(
                f"{arrived.isoformat(timespec='milliseconds')} {self.role} {scope['method']} "
                f"{self.secrets.masked(path)} {shown} {code} {milliseconds:.1f} ms{note}\n"
            )
