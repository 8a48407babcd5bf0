"""The way to the upstream: a pool of the worker's own connections (proxy/wire.py), or httpx where an
environment proxy (HTTPS_PROXY) stands between or a test gives an in-process app; the end-to-end headers
passed on both ways (hop-by-hop ones dropped, RFC 9110 7.6.1), and what went wrong on the wire, in the
words of the proxy's 502 (the mapping table's -7 when nothing reached the upstream, -6 when it may
have)."""

from __future__ import annotations

import socket
import ssl
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from mpesa_atm.codes import ResponseCode
from mpesa_atm.proxy.wire import BrokenAnswer, NoAnswerInTime, NoConnection, Pool
from mpesa_atm.transport import Network, tls_problem

__all__ = ["HOP_BY_HOP", "Answered", "Unanswered", "Upstream", "decoded", "end_to_end"]

# Headers that belong to one connection, not to the message (RFC 9110 7.6.1), and those the proxy
# sets itself (Host for the upstream, Content-Length of what it sends).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

Headers = Sequence[tuple[str, str]]


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` less the hop-by-hop ones, and less those a Connection header names."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(name, value) for name, value in pairs if name.lower() not in HOP_BY_HOP | named]


def decoded(body: bytes, headers: Headers) -> bytes:
    """The body as the checks read it: a gzip or deflate Content-Encoding undone (the client gets the
    bytes as they came); a body that does not decode is read as it came."""
    encoding = next(
        (value.strip().lower() for name, value in headers if name.lower() == "content-encoding"), ""
    )
    if encoding not in ("gzip", "deflate", "x-gzip"):
        return body
    try:
        return zlib.decompress(body, 47 if encoding != "deflate" else zlib.MAX_WBITS)
    except zlib.error:
        return body


@dataclass(frozen=True)
class Answered:
    """The upstream's answer: its status, end-to-end headers and body, as they came."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Unanswered:
    """No answer came: `reason` in a few words, and the code of the proxy's 502: -7 System Too Busy
    when nothing reached the upstream (try again later), -6 Request Time Out when the request may
    have reached it (a time-out, a connection closed or reset after it was sent: the outcome is
    unknown, as after the document's own time-out)."""

    reason: str
    code: ResponseCode
    timed_out: bool = False


class Upstream:
    """The upstream at `base_url`, reached as `network` says (--cacert, --cert/--key, -k, -H), each
    request given `timeout` seconds. Opened in a worker's lifespan: the pool is the worker's."""

    def __init__(
        self,
        base_url: str,
        network: Network,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.network = network
        self.timeout = timeout
        self.transport = transport  # None: the network's; a test's in-process app
        self._client: httpx.AsyncClient | None = None
        self._pool: Pool | None = None

    def open(self) -> None:
        target = urlsplit(self.base_url)
        if self.transport is None and not _behind_a_proxy(target.scheme, target.hostname or ""):
            verify = self.network.ssl_context()
            if target.scheme == "https" and not isinstance(verify, ssl.SSLContext):
                verify = httpx.create_ssl_context(verify=verify, trust_env=True)  # httpx's own trust
            self._pool = Pool(target, verify if isinstance(verify, ssl.SSLContext) else None)
            return
        self._client = httpx.AsyncClient(
            verify=self.network.ssl_context(),
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            follow_redirects=False,
            trust_env=True,  # HTTPS_PROXY, as fuzz and verify honour it
            transport=self.transport,
        )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def url(self, path: str, query: str = "") -> str:
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    async def post(self, url: str, headers: Headers, body: bytes) -> Answered | Unanswered:
        """POSTs `body` with the client's end-to-end `headers` (and the network's -H), redirects not
        followed; the answer's bytes as they came (not decoded)."""
        sent = [*end_to_end(headers), *self.network.headers]
        if self._pool is None:
            return await self._post_httpx(url, sent, body)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            raw = await self._pool.post(target, sent, body, self.timeout)
        except NoConnection as exc:
            if exc.timed_out:
                return Unanswered("could not connect in time", ResponseCode.SYSTEM_TOO_BUSY, timed_out=True)
            return Unanswered(self._closed(exc, "cannot connect", url), ResponseCode.SYSTEM_TOO_BUSY)
        except NoAnswerInTime:
            return Unanswered(
                f"no answer within {self.timeout:g} s", ResponseCode.REQUEST_TIME_OUT, timed_out=True
            )
        except BrokenAnswer as exc:
            return Unanswered(self._hinted(tls_problem(exc) or str(exc), url), ResponseCode.REQUEST_TIME_OUT)
        return Answered(raw.status, raw.reason, tuple(end_to_end(raw.headers)), raw.body)

    async def _post_httpx(self, url: str, sent: list[tuple[str, str]], body: bytes) -> Answered | Unanswered:
        assert self._client is not None, "the upstream is opened in the worker's lifespan"
        request = self._client.build_request("POST", url, headers=sent, content=body)
        try:
            response = await self._client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.ConnectTimeout:
            return Unanswered("could not connect in time", ResponseCode.SYSTEM_TOO_BUSY, timed_out=True)
        except httpx.TimeoutException:
            return Unanswered(
                f"no answer within {self.timeout:g} s", ResponseCode.REQUEST_TIME_OUT, timed_out=True
            )
        except httpx.ConnectError as exc:
            return Unanswered(self._closed(exc, "cannot connect", url), ResponseCode.SYSTEM_TOO_BUSY)
        except httpx.TransportError as exc:  # closed, reset, malformed after the request went
            return Unanswered(
                self._closed(exc, "the connection broke without an answer", url),
                ResponseCode.REQUEST_TIME_OUT,
            )
        return Answered(
            response.status_code,
            response.reason_phrase,
            tuple(end_to_end(response.headers.multi_items())),
            raw,
        )

    def _closed(self, exc: BaseException, default: str, url: str) -> str:
        """What went wrong with httpx's `exc`, in _words' words, hinted as _hinted says."""
        return self._hinted(_words(exc, default), url)

    def _hinted(self, words: str, url: str) -> str:
        """`words`; a connection to an https:// upstream closed without a word told what that may
        mean (a server that wants a client certificate, or refuses ours, closes it so under TLS 1.3,
        after the handshake the client saw succeed), with the flag to give or check."""
        if words.startswith(_CLOSED):
            return words + self.network.closed_hint(url)
        return words


# How _words says a connection closed or reset without a word of TLS (a TLS failure is worded as such).
_CLOSED = (
    "the connection broke without an answer",
    "the connection was closed without an answer",
    "connection reset by peer",
)


def _behind_a_proxy(scheme: str, host: str) -> bool:
    """Whether the environment puts a proxy between (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, less
    NO_PROXY): httpx then takes the way, as fuzz's and verify's clients do."""
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(host, proxies)  # type: ignore[attr-defined]


def _words(exc: BaseException, default: str) -> str:
    """What went wrong, in a few words: a TLS problem as transport words it, else the error's own."""
    tls = tls_problem(exc)
    if tls is not None:
        return tls
    cause: BaseException | None = exc
    while cause is not None:  # httpcore's own words hide the system's ("All connection attempts failed")
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(cause, socket.gaierror):
            return "name or service not known"
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split())
    for marker, words in (
        ("Connection refused", "connection refused"),
        ("Connection reset", "connection reset by peer"),
        ("Server disconnected", "the connection was closed without an answer"),
        ("Name or service not known", "name or service not known"),
    ):
        if marker in text:
            return words
    return f"{default} ({text[:200]})" if text else default
