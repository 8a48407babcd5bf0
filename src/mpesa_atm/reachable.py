"""Whether a partner listens: a TCP connection, no request, tried again while it is refused.

`mpesa-atm serve & mpesa-atm verify ...` starts both at once: the target refuses connections for the
moment it takes to start, and fuzz and verify wait for it (`--wait`) rather than report it unreachable.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

__all__ = ["url_problem", "wait_until_listening"]


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as a partner's address ("'x' is not an http:// or https:// URL",
    "... has an invalid port"), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http:// or https:// URL"
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return f"{url!r} has an invalid port"
    return None


def wait_until_listening(url: str, *, wait: float, timeout: float) -> None:
    """Returns once a TCP connection to `url`'s host and port succeeds. A refused connection is tried
    again until `wait` seconds have passed; any other failure, or a refusal after that, is raised
    (an OSError: its strerror says why)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"{url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            return
        except ConnectionRefusedError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)
