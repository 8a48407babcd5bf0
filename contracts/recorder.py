"""The verifier's requests go through a recording proxy on loopback: it forwards each to the provider
unchanged (over TLS, with a client certificate, as the network says: Pact's verifier can present no
client certificate) and keeps the exchange; the state changes the relay forwards go on the same
timeline, which says which exchange belongs to which interaction (for --report and --har)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import httpx

from mpesa_atm.contracts.loopback import LoopbackServer
from mpesa_atm.reporting.exchange import Exchange, headers_of
from mpesa_atm.transport import Network, tls_problem

__all__ = ["RecordingProxy", "StateChange", "Timeline", "group_by_interaction"]

# Hop-by-hop headers, and those httpx has already applied to the body it hands over.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
)


@dataclass(frozen=True)
class StateChange:
    state: str
    action: str  # setup or teardown


class Timeline:
    """State changes and exchanges in the order they happened, from the relay's and the proxy's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[StateChange | Exchange] = []

    def add(self, item: StateChange | Exchange) -> None:
        with self._lock:
            self.items.append(item)

    @property
    def exchanges(self) -> list[Exchange]:
        return [item for item in self.items if isinstance(item, Exchange)]


@dataclass
class _Group:
    states: list[str]
    exchange: Exchange | None = None
    closed: bool = False  # its states were torn down


def group_by_interaction(
    items: Sequence[StateChange | Exchange],
) -> list[tuple[tuple[str, ...], Exchange | None]]:
    """The interactions as the timeline shows them, in order: the states set up for each and the
    exchange that followed (None when the verifier sent nothing, e.g. a state could not be set up).
    A setup opens an interaction unless it follows another setup; an exchange after an exchange or
    a teardown is an interaction without states."""
    groups: list[_Group] = []
    for item in items:
        current = groups[-1] if groups else None
        if isinstance(item, Exchange):
            if current is None or current.closed or current.exchange is not None:
                current = _Group([])
                groups.append(current)
            current.exchange = item
        elif item.action == "setup":
            if current is None or current.closed or current.exchange is not None:
                current = _Group([])
                groups.append(current)
            current.states.append(item.state)
        elif current is not None:
            current.closed = True
    return [(tuple(group.states), group.exchange) for group in groups]


class RecordingProxy(LoopbackServer):
    """A loopback HTTP server that forwards every request to `upstream` (scheme and host of the
    provider; the path is the request's) and puts each exchange on `timeline`. A provider that gives
    no answer gets the verifier none either: the connection is closed."""

    def __init__(
        self, upstream: str, timeline: Timeline, timeout: float, network: Network | None = None
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.timeline = timeline
        verify = (network or Network()).ssl_context()
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, verify=verify)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = proxy.forward(self.command, self.path, list(self.headers.items()), body)
                if answer is None:
                    self.close_connection = True
                    return
                self.send_response(answer.status_code, answer.reason_phrase)
                for name, value in answer.headers.multi_items():
                    if name.lower() not in _NOT_FORWARDED:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the report says what matters

        super().__init__(Handler, "verification recorder", self._client)

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> httpx.Response | None:
        url = self.upstream + path
        sent = [(name, value) for name, value in headers if name.lower() not in _NOT_FORWARDED]
        started, clock = datetime.now(UTC), time.perf_counter()
        label = f"{method} {urlsplit(url).path}"
        try:
            answer = self._client.request(method, url, headers=sent, content=body)
        except httpx.HTTPError as exc:
            reason = tls_problem(exc) or str(exc) or type(exc).__name__
            self.timeline.add(
                Exchange(
                    started,
                    time.perf_counter() - clock,
                    method,
                    url,
                    headers_of(sent),
                    body,
                    None,
                    reason,
                    label=label,
                )
            )
            return None
        self.timeline.add(
            Exchange(
                started=started,
                elapsed=time.perf_counter() - clock,
                method=method,
                url=url,
                request_headers=headers_of(sent),
                request_body=body,
                status=answer.status_code,
                reason=answer.reason_phrase,
                response_headers=headers_of(answer.headers.multi_items()),
                response_body=answer.content,
                label=label,
            )
        )
        return answer


def exchanges_of(
    interactions: Sequence[tuple[tuple[str, ...], str]], items: Sequence[StateChange | Exchange]
) -> list[Exchange | None]:
    """For each interaction (its states, and its request's path) in the order verified, the exchange
    the timeline pairs it with: the next group with the same states and an exchange on that path."""
    groups = group_by_interaction(items)
    found: list[Exchange | None] = []
    position = 0
    for states, path in interactions:
        match = None
        for index in range(position, len(groups)):
            group_states, exchange = groups[index]
            if group_states == states and (exchange is None or urlsplit(exchange.url).path == path):
                match, position = exchange, index + 1
                break
        found.append(match)
    return found
