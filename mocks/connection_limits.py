"""The server's HTTP/1.1 protocol with bounded connections: uvicorn's httptools protocol plus a limit on
the request line and headers (431), a time-out on reading them (408, or a silent close), and a cap on
the connections a worker holds open, at which the longest idle ones are closed to make room.

uvicorn bounds none of these: a connection that sends nothing or half its headers is never closed,
httptools buffers an endless header whole, and a worker that reaches its open-file limit stops
accepting (the callers get an empty reply or a reset, and nothing is logged).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import resource
import weakref
from typing import Any, NamedTuple

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from mpesa_atm.settings import Settings, load_settings

__all__ = ["BoundedHttp", "ConnectionLimits", "default_max_connections"]

log = logging.getLogger("mpesa_atm.mocks")

# Seconds a refused connection is still read (and what it sends dropped) after its answer: closing on
# unread bytes resets the connection, and the reset can overtake the answer (a lingering close).
_LINGER_SECONDS = 2.0
# Files a worker keeps for itself beyond its connections: the store, journal, WAL, logs, its pool of
# connections to the other mock or to PostgreSQL; a quarter of the limit, at most 256.
_RESERVED_FILES = 256


def default_max_connections() -> int:
    """The cap on a worker's open connections when none is set: below its open-file limit, leaving
    room for the files it needs itself."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - min(soft // 4, _RESERVED_FILES))


class ConnectionLimits(NamedTuple):
    """What a worker allows a connection: the settings of the same names (`Settings`)."""

    max_header_bytes: int
    header_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        cap = settings.max_connections if settings.max_connections is not None else default_max_connections()
        return cls(settings.max_header_bytes, settings.header_timeout, cap)


class _Worker:
    """A worker's connections: the idle ones, longest idle first, and the ones whose request head is
    being read, each with its deadline, which one timer for them all looks at every second (or four
    times per `header_timeout`, if shorter): a timer per connection would be scheduled and cancelled
    on every call."""

    def __init__(self, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.loop = loop
        self.idle: dict[BoundedHttp, None] = {}  # insertion order: longest idle first
        self.reading_head: dict[BoundedHttp, float] = {}  # deadline (loop.time()), earliest first
        self.capped_before = False
        self._timer: asyncio.TimerHandle | None = None

    def watch_head(self, connection: BoundedHttp) -> None:
        self.reading_head[connection] = self.loop.time() + self.limits.header_timeout
        if self._timer is None:
            self._timer = self.loop.call_later(self._period, self._sweep)

    @property
    def _period(self) -> float:  # a connection is closed at most this late: 1 s past 10 s
        return min(self.limits.header_timeout / 4, 1.0)

    def _sweep(self) -> None:
        now = self.loop.time()
        overdue = []
        for connection, deadline in self.reading_head.items():
            if deadline > now:
                break  # one time-out for all: later entries have later deadlines
            overdue.append(connection)
        for connection in overdue:
            connection.head_timed_out()
        self._timer = self.loop.call_later(self._period, self._sweep) if self.reading_head else None

    def make_room(self, newcomer: BoundedHttp, open_connections: int) -> bool:
        """At the cap, closes the longest idle connection, else the one reading its head the longest;
        False when every other one has a request under way (the newcomer is then turned away)."""
        if open_connections <= self.limits.max_connections:
            return True
        if not self.capped_before:
            self.capped_before = True
            log.warning(
                "worker %d: %d connections open, its cap (max_connections); the longest idle ones are"
                " closed to make room for new callers (said once)",
                os.getpid(),
                self.limits.max_connections,
            )
        # The first in order, not a list of all: at a cap of thousands this runs for every new caller.
        victim = next((c for c in itertools.chain(self.idle, self.reading_head) if c is not newcomer), None)
        if victim is None:
            return False
        victim.evict()
        return True


_WORKERS: weakref.WeakKeyDictionary[ServerState, _Worker] = weakref.WeakKeyDictionary()


def _worker_of(server_state: ServerState, loop: asyncio.AbstractEventLoop) -> _Worker:
    worker = _WORKERS.get(server_state)
    if worker is None:
        # The workers build their app from the environment (`serve` puts its settings there); so do we.
        worker = _WORKERS[server_state] = _Worker(ConnectionLimits.of(load_settings()), loop)
    return worker


class BoundedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the request head bounded in size and time, and the worker's
    connections capped (see the module's docstring)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any], **kw: Any):
        super().__init__(config, server_state, app_state, **kw)
        self.worker = _worker_of(server_state, self.loop)
        self.head_bytes = 0  # of the request head being read
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._become_idle()
        self.worker.watch_head(self)  # a connection that never sends a request is closed in time too
        if not self.worker.make_room(self, len(self.connections)):
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.idle.pop(self, None)
        self.worker.reading_head.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # the lingering close: read and dropped
        if self._leave_idle():  # the first bytes of a request
            self.head_bytes = 0
            if self not in self.worker.reading_head:  # a kept-alive connection: its own deadline
                self.worker.watch_head(self)
        reading_head = self in self.worker.reading_head
        super().data_received(data)
        if self.transport.is_closing():
            return  # a framing error uvicorn answered 400
        if reading_head and self in self.worker.reading_head:  # still no blank line after the headers
            self.head_bytes += len(data)
            if self.head_bytes > self.worker.limits.max_header_bytes:
                limit = self.worker.limits.max_header_bytes
                self.refuse(431, f"Failure: the request line and headers are over {limit} bytes")

    def on_headers_complete(self) -> None:
        self.worker.reading_head.pop(self, None)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # uvicorn waits for the next request: idle
            self._become_idle()

    def _become_idle(self) -> None:
        self.worker.idle[self] = None

    def _leave_idle(self) -> bool:
        """Whether the connection was idle (no byte of a request since it opened or last answered)."""
        return self.worker.idle.pop(self, False) is None

    def head_timed_out(self) -> None:
        """Past `header_timeout` without a whole request head: 408 if part of one came, else closed."""
        self.worker.reading_head.pop(self, None)
        if self._leave_idle():
            self.transport.close()  # nothing sent: nothing to answer
        else:
            timeout = self.worker.limits.header_timeout
            self.refuse(408, f"Failure: the request headers did not arrive within {timeout:g} s")

    def evict(self) -> None:
        """Closed to make room for a new connection (at the worker's cap)."""
        self.worker.idle.pop(self, None)
        self.worker.reading_head.pop(self, None)
        self.transport.close()

    def refuse(self, status: int, description: str) -> None:
        """Answers `status` in the API's envelope (code and description, as a 404 has) and closes."""
        self.refused = True
        self.worker.reading_head.pop(self, None)
        body = json.dumps({"output_ResponseCode": "-1", "output_ResponseDesc": description}).encode()
        head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(
            body
        )
        self.transport.write(STATUS_LINE[status] + head + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
