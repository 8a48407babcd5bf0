"""ASGI layer: the API's operations answered without connexion's per-call machinery.

Built at start-up from the served document: for each operation, its path, its request schema
(refs resolved, checked by the compiled validator of validation.py) and its handler. A call it
takes is a POST to an operation's exact path, with no query string, a non-empty body (already read
by RequestBody, inside whose layer this one sits) and `Content-Type: application/json` (charset
utf-8 or none): parsed, validated and answered exactly as connexion would, refusals included
(validation.parse_body and check_body are the code connexion's validator runs). Everything else
(another method, a query string, another media type, an empty body, the docs and the control API)
is passed on to connexion, whose answers stay the reference; tests/mocks/test_fastpath.py sends
the same corpus through both and requires the same answers.

connexion's path costs about 3.5 thousand calls a second a core; this one lets a worker answer
several times that (benchmarks/README.md). `validate_responses` (a setting) leaves this layer out,
so the API's calls take connexion's path again, answers checked against the document.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from connexion.exceptions import ProblemException
from starlette.types import ASGIApp, Receive, Scope, Send

from mpesa_atm.mocks.request_body import BODY_KEY
from mpesa_atm.mocks.validation import check_body, parse_body

__all__ = ["PARSED_KEY", "FastPath", "Handler", "Operation"]

log = logging.getLogger("mpesa_atm.mocks")

# The body as parsed and found valid (a flat object of strings), for the journal, which then masks
# the password in it instead of parsing the body again (RequestJournal).
PARSED_KEY = "mpesa_atm.parsed"

# The media types connexion reads as JSON in utf-8 (RequestBody has lower-cased the type; a
# charset parameter connexion reads is taken as written: utf-8 in any case is the same codec).
_JSON_TYPES = frozenset(
    {
        b"application/json",
        b"application/json;charset=utf-8",
        b"application/json;charset=UTF-8",
        b"application/json; charset=utf-8",  # connexion sees no charset here: utf-8 too
        b"application/json; charset=UTF-8",
    }
)
# What connexion's answers carry: the handler's (a success or a fault's envelope) and a refusal's.
_ANSWER_TYPE = (b"content-type", b"application/json")

# (scope, status, reason) -> (status, answer): a refusal in the API's envelope (app._Envelopes).
Refusal = Callable[[Scope, ProblemException], tuple[int, dict[str, Any]]]
Internal = Callable[[Scope, Exception], tuple[int, dict[str, Any]]]
# (body, scope) -> the answer: Faults.run around the rules, as the connexion handler calls it.
Handler = Callable[[dict[str, Any], Scope], Awaitable[dict[str, str]]]


class Operation:
    """One API operation as the fast path serves it."""

    __slots__ = ("handler", "schema")

    def __init__(self, schema: dict[str, Any], handler: Handler) -> None:
        self.schema = schema
        self.handler = handler


class FastPath:
    def __init__(
        self,
        app: ASGIApp,
        *,
        operations: Mapping[str, Operation],
        refusal: Refusal,
        internal: Internal,
    ) -> None:
        self.app = app
        self.operations = dict(operations)  # path -> Operation
        self.refusal = refusal
        self.internal = internal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = self.operations.get(scope["path"]) if scope["type"] == "http" else None
        if operation is None or scope["method"] != "POST" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        raw = scope.get(BODY_KEY)
        if not raw or _content_type(scope) not in _JSON_TYPES:
            await self.app(scope, receive, send)  # connexion's answer: a 415, an empty body...
            return
        try:
            body = parse_body(raw)
            check_body(operation.schema, body)
            scope[PARSED_KEY] = body
            answer = await operation.handler(body, scope)
        except ProblemException as exc:
            await _send(send, *self.refusal(scope, exc), refused=True)
            return
        except Exception as exc:  # a bug of the mock: answered as connexion's error handler would
            log.exception("%s %s failed", scope["method"], scope["path"])
            await _send(send, *self.internal(scope, exc), refused=True)
            return
        await _send(send, 200, answer)


def _content_type(scope: Scope) -> bytes | None:
    """The first Content-Type header, as connexion reads it (RequestBody lower-cased the type)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return None


async def _send(send: Send, status: int, answer: dict[str, Any], *, refused: bool = False) -> None:
    """`answer` as connexion sends it: a handler's JSON with a final newline, content-type first;
    a refusal's (made by an error handler) without, content-length first."""
    if refused:
        data = json.dumps(answer).encode()
        headers = [(b"content-length", str(len(data)).encode()), _ANSWER_TYPE]
    else:
        data = (json.dumps(answer) + "\n").encode()
        headers = [_ANSWER_TYPE, (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
