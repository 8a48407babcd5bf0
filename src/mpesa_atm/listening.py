"""The listening socket of `serve` and `proxy`, bound before anything is built."""

from __future__ import annotations

import socket

from mpesa_atm.errors import UsageError

__all__ = ["listen"]


def listen(host: str, port: int, label: str, *, inheritable: bool = False) -> socket.socket:
    """A listening socket on host:port (port 0: one the system picks), or UsageError naming `label`.

    Bound and listening before the app is built: a client that connects while the server starts
    waits in the backlog instead of being refused, and the banner shows the real port. `inheritable`
    for the workers uvicorn starts and the role processes of `serve`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {label}: {exc.strerror or exc}") from None
    sock.set_inheritable(inheritable)
    return sock
