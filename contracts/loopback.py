"""A small HTTP server on a loopback port, in a thread of its own, for the verifier to call: the
provider-state relay and the recording proxy are two."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import httpx

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 (a port the system picks, bound at once) while entered; `client`
    is what it forwards with, closed on exit."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str, client: httpx.Client) -> None:
        self._client = client
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # shutdown() waits for serve_forever's next look at its flag: every 0.5 s by default, half a
        # second at the end of every verify run for each of its servers; 20 ms is at once to a person.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=name
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        self._client.close()
