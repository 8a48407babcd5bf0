"""The outermost ASGI layer: breaks a connection when a fault asked for it (reset, empty, malformed).

A fault decided by `faults.Faults` writes what to break into the call's slot (`SLOT_KEY` in the
scope); this layer reads it when the answer is sent, and `sent_instead` tells the journal and the
access log what the client got instead of the answer. It needs the server's transport, which
uvicorn's `send` carries; in-process test clients see a ConnectionResetError instead.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.mocks.faults import SLOT_KEY

__all__ = ["ConnectionFaults", "Instead", "breaking", "instead_of", "sent_instead"]

_MALFORMED = b'{"output_ResponseCode": "0", "output_Respon'


class ConnectionFaults:
    """Outermost ASGI layer: breaks the connection when a fault asked for it.

    It needs the server's transport, which uvicorn's `send` carries; elsewhere (in-process test
    clients) a broken connection is raised as ConnectionResetError.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot: dict[str, str] = {}
        scope[SLOT_KEY] = slot
        broken: Send | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal broken
            fault = slot.get("connection")
            if fault is None:
                await send(message)
                return
            if broken is None:
                broken = breaking(send, fault)
            await broken(message)

        await self.app(scope, receive, guarded_send)


def breaking(send: Send, fault: str) -> Send:
    """`send` for an answer that `fault` (reset, empty, malformed) breaks: what the client gets
    instead of it. The proxy's faults (proxy/faults.py) break their answers with it too."""
    dropped = False

    async def broken(message: Message) -> None:
        nonlocal dropped
        if fault == "malformed":
            await _send_malformed(send, message)
        elif not dropped:
            dropped = True
            await _drop(send, reset=fault == "reset")

    return broken


class Instead(NamedTuple):
    """What a connection fault sent in place of the call's answer."""

    fault: str  # reset, empty, malformed
    status: int | None  # the status line the client read; None: it read none
    body: bytes | None  # the bytes of body it read; None: none


def sent_instead(scope: Scope) -> Instead | None:
    """What the client of `scope` gets instead of the answer the mock made, if a fault breaks it."""
    slot = scope.get(SLOT_KEY)
    fault = slot.get("connection") if slot else None
    if fault is None:
        return None
    return instead_of(fault)


def instead_of(fault: str) -> Instead:
    """What the client gets when `fault` (reset, empty, malformed) breaks an answer."""
    if fault == "malformed":
        return Instead(fault, 200, _MALFORMED)
    return Instead(fault, None, None)


async def _send_malformed(send: Send, message: Message) -> None:
    """A 200 whose JSON body stops half-way (the Content-Length matches what is sent)."""
    if message["type"] == "http.response.start":
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_MALFORMED)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    elif message["type"] == "http.response.body" and not message.get("more_body", False):
        await send({"type": "http.response.body", "body": _MALFORMED})


async def _drop(send: Send, *, reset: bool) -> None:
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("connection fault injected by the harness")
    if reset:  # RST instead of FIN: the peer sees "connection reset by peer"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:  # EMPTY_RESPONSE: closed without a byte of answer
        transport.close()
    await asyncio.sleep(0)  # let the server see the connection gone before the app returns
