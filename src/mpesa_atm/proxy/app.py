"""The proxy's ASGI app: plain ASGI, no framework's per-call machinery in the path of the traffic.

A POST to one of the role's operations is judged on the client's side, forwarded to the upstream,
judged on the upstream's side (one exchange by fuzz's checks, then across exchanges by the ledger),
journalled in the store, shown as a line on stdout, and answered with the upstream's answer unchanged
(status, end-to-end headers, body bytes), plus `X-Mpesa-Atm-Violations` when something broke. With
`--errors` a request that breaks the document is refused (400) and an answer that breaks it is
replaced (502), each in the envelope naming the violation. No answer from the upstream is a 502 in the
envelope. `GET /_harness/journal` and `GET /_harness/violations` show what went through, passwords
masked; anything else is 404 in the envelope, as the mocks answer it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson
from starlette.types import Message, Receive, Scope, Send

from mpesa_atm.codes import ResponseCode, bank_answer, ipg_answer
from mpesa_atm.fuzz.curl import curl_command
from mpesa_atm.fuzz.events import Listener
from mpesa_atm.masking import PASSWORD_FIELD, Secrets, masked, masked_body, masked_text
from mpesa_atm.operations import CONTROL_PREFIX, Role, operations_of
from mpesa_atm.proxy.evidence import Run, line_of
from mpesa_atm.proxy.findings import Exchange, Finding
from mpesa_atm.proxy.forward import Unanswered, Upstream, decoded
from mpesa_atm.proxy.judge import Judge, Judged, Seen
from mpesa_atm.reporting.exchange import Exchange as WireExchange
from mpesa_atm.settings import Settings
from mpesa_atm.transport import Network

if TYPE_CHECKING:
    from schemathesis import Case

__all__ = ["DIRECTION", "VIOLATIONS_HEADER", "Observer", "ProxyApp", "create_proxy"]

log = logging.getLogger("mpesa_atm.proxy")

VIOLATIONS_HEADER = "X-Mpesa-Atm-Violations"
# The proxy's entries in the store's journal (the mocks' are "inbound" and "outbound").
DIRECTION = "proxy"
_ECHOABLE = re.compile(r"^[!-~]{1,32}$")


class Observer(Protocol):
    """The judgement across exchanges (proxy/ledger.py's Ledger): what an exchange breaks read with
    the earlier ones the store keeps."""

    async def observe(self, exchange: Exchange) -> tuple[Finding, ...]: ...


def _parsed(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _text(body: dict[str, Any] | None, key: str) -> str | None:
    value = body.get(key) if body is not None else None
    return value if isinstance(value, str) else None


class ProxyApp:
    """The proxy of `role` in front of `upstream`. `store` (opened in the lifespan, from `open_store`)
    keeps the journal; `observer` (made with it by `ledger_of`) judges across exchanges; `run` tells
    fuzz's reporters; `out` writes each exchange's line."""

    def __init__(
        self,
        role: Role,
        settings: Settings,
        *,
        upstream: Upstream,
        judge: Judge,
        run: Run,
        open_store: Callable[[], Any],
        ledger_of: Callable[[Any, Settings], Observer] | None,
        errors: bool = False,
        out: Callable[[str], None] = print,
    ) -> None:
        self.role = role
        self.settings = settings
        self.upstream = upstream
        self.judge = judge
        self.run = run
        self.errors = errors
        self.out = out
        self._open_store = open_store
        self._ledger_of = ledger_of
        self.store: Any = None
        self.ledger: Observer | None = None
        self.by_path = {settings.paths[op.id]: op.id for op in operations_of(role)}
        self.served = ", ".join(f"POST {path}" for path in self.by_path)
        # The passwords masked by value (the configured ones) as well as input_Password by name.
        self.secrets = Secrets.of_banks(settings.banks, settings.bank_password)

    # ASGI -----------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        operation_id = self.by_path.get(path)
        if operation_id is not None and scope["method"] == "POST":
            await self._exchange(scope, receive, send, operation_id)
        elif operation_id is not None:
            await self._envelope(
                send,
                405,
                ResponseCode.FAILURE,
                f"{scope['method']} is not allowed on {path}; use POST",
                b"",
                {"allow": "POST"},
            )
        elif scope["method"] in ("GET", "HEAD") and path == f"{CONTROL_PREFIX}/journal":
            await self._json(send, 200, {"entries": await self._journal()})
        elif scope["method"] in ("GET", "HEAD") and path == f"{CONTROL_PREFIX}/violations":
            await self._json(send, 200, {"violations": list(reversed(self.run.violations))})
        elif path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            detail = f"the proxy serves GET {CONTROL_PREFIX}/journal and GET {CONTROL_PREFIX}/violations"
            await self._json(send, 404, {"error": "Not Found", "detail": detail})
        else:
            await self._envelope(
                send, 404, ResponseCode.FAILURE, f"no API at {path}; this proxy serves {self.served}", b""
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.store = self._open_store()
                    self.ledger = self._ledger_of(self.store, self.settings) if self._ledger_of else None
                    self.upstream.open()
                except Exception as exc:
                    log.exception("the proxy could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.close()
                if self.store is not None:
                    self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # One exchange ---------------------------------------------------------------------------------------

    async def _exchange(self, scope: Scope, receive: Receive, send: Send, operation_id: str) -> None:
        started = time.perf_counter()
        at = self.settings.clock()
        body = await self._body(receive)
        if body is None:
            limit = self.settings.max_body_bytes
            await self._envelope(send, 413, ResponseCode.FAILURE, f"the body is over {limit} bytes", b"")
            return
        path: str = scope["path"]
        call = _Call(
            exchange_id=uuid.uuid4().hex,
            operation_id=operation_id,
            at=at,
            started=started,
            url=self.upstream.url(path, scope["query_string"].decode("latin-1")),
            label=f"POST {path}",
            headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]),
            body=body,
            request=_parsed(body),
        )
        seen = Seen(operation_id, call.headers, body)
        case, client = self._client_side(seen, call.exchange_id)
        if self.errors and any(self.run.failing(f) for f in client.findings):
            # Never forwarded: the client hears why, the upstream nothing (nor the ledger).
            refused = [f for f in client.findings if self.run.failing(f)]
            wire = call.wire(None, "refused by the proxy (--errors)")
            await self._finish(send, call, wire, self._refusal(400, refused, body), client, None)
            return
        outcome = await self.upstream.post(call.url, call.headers, body)
        if isinstance(outcome, Unanswered):
            wire = call.wire(None, outcome.reason)
            across = await self._observe(call.exchange(self.role, 0, None, wire.elapsed))
            judged = Judged(
                (*client.findings, _no_answer(outcome, call.exchange_id), *across), client.applied
            )
            await self._finish(send, call, wire, self._unanswered(outcome, call.url, body), judged, None)
            return
        answer_body = decoded(outcome.body, outcome.headers)  # as the checks read it
        wire = call.wire(outcome.status, outcome.reason, outcome.headers, answer_body)
        seen = Seen(
            operation_id, call.headers, body, outcome.status, outcome.headers, answer_body, wire.elapsed
        )
        upstream = self._upstream_side(seen, case, call.exchange_id)
        answer = _parsed(answer_body)
        across = await self._observe(call.exchange(self.role, outcome.status, answer, wire.elapsed))
        judged = Judged((*client.findings, *upstream.findings, *across), (*client.applied, *upstream.applied))
        broken = [f for f in (*upstream.findings, *across) if f.side == "upstream" and self.run.failing(f)]
        if self.errors and broken:
            reply = self._refusal(502, broken, body)
        else:
            reply = _Reply(outcome.status, outcome.headers, outcome.body)
        await self._finish(send, call, wire, reply, judged, answer)

    def _client_side(self, seen: Seen, exchange_id: str) -> tuple[Case | None, Judged]:
        """The request as a case, and the client's side of the judgement; a bug of the judge's lets
        the exchange through unjudged, said in the log (the traffic matters more than its verdict)."""
        try:
            case = self.judge.case(seen)
            return case, self.judge.client(seen, case, exchange_id)
        except Exception:
            log.exception("the proxy could not judge the request of exchange %s", exchange_id)
            return None, Judged()

    def _upstream_side(self, seen: Seen, case: Case | None, exchange_id: str) -> Judged:
        if case is None:
            return Judged()
        try:
            return self.judge.upstream(seen, case, exchange_id)
        except Exception:
            log.exception("the proxy could not judge the answer of exchange %s", exchange_id)
            return Judged()

    async def _observe(self, exchange: Exchange) -> tuple[Finding, ...]:
        if self.ledger is None:
            return ()
        try:
            return tuple(await self.ledger.observe(exchange))
        except Exception:  # a bug of the ledger's: the exchange still goes through, said in the log
            log.exception("the ledger could not judge exchange %s", exchange.exchange_id)
            return ()

    async def _finish(
        self,
        send: Send,
        call: _Call,
        wire: WireExchange,
        reply: _Reply,
        judged: Judged,
        answer: dict[str, Any] | None,
    ) -> None:
        """Sends the client `reply` (with the header naming the checks that found something), then
        journals the exchange, tells the run and prints its line: the evidence is kept once the
        answer is on its way, so that the client waits only for what decides the answer. `answer`:
        the upstream's, parsed."""
        findings = judged.findings
        headers = [(name, value) for name, value in reply.headers if name.lower() != "content-length"]
        headers.append(("content-length", str(len(reply.body))))
        marked = list(dict.fromkeys(f.check for f in findings))
        if marked:
            headers.append((VIOLATIONS_HEADER, ", ".join(marked)))
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})
        # A finding quotes what it received (an answer may echo a password): masked as the journal is.
        findings = tuple(
            dataclasses.replace(f, title=self._masked(f.title), message=self._masked(f.message))
            for f in findings
        )
        milliseconds = wire.elapsed * 1000
        try:
            await self._journal_add(call, wire, reply, findings, milliseconds)
        except Exception:  # the journal is evidence, not the traffic
            log.exception("the journal could not take exchange %s", call.exchange_id)
        at = call.at.astimezone(UTC)
        self.run.exchange(
            wire,
            operation=call.label,
            applied=judged.applied,
            code=_text(answer, "output_ResponseCode"),
            description=_text(answer, "output_ResponseDesc"),
            findings=findings,
            reproduce=self._curl(wire, call.request) if findings else "",
            at=at,
        )
        shown_code = _text(_parsed(reply.body), "output_ResponseCode")  # what the client got
        self.out(line_of(at, self.role, call.label, reply.status, shown_code, milliseconds, findings))

    def _masked(self, text: str) -> str:
        """`text` with the configured passwords masked by value, and any input_Password's value."""
        return self.secrets.masked(masked_text(text))

    def _curl(self, wire: WireExchange, request: dict[str, Any] | None) -> str:
        """The exchange's request as a curl command to the upstream, its password read from a variable."""
        media_type = next(
            (v for n, v in wire.request_headers if n.lower() == "content-type"), "application/json"
        )
        body: Any = request if request is not None else wire.request_body
        secret = _text(request, PASSWORD_FIELD)
        return curl_command(
            wire.url, body, media_type=media_type, secret=secret, options=self.upstream.network.curl_options()
        )

    async def _journal_add(
        self, call: _Call, wire: WireExchange, reply: _Reply, findings: Sequence[Finding], milliseconds: float
    ) -> None:
        """The exchange in the store's journal (direction `proxy`): what the client sent and got, and
        in the response's record the exchange's id, the upstream's status and the violations."""
        from mpesa_atm.mocks.records import JournalRecord

        if self.store is None:
            return
        kept = {
            "exchange_id": call.exchange_id,
            "upstream_status": wire.status,
            "answer": masked_body(reply.body),
            "violations": [
                {"check": f.check, "side": f.side, "severity": f.severity, "rule": f.rule, "title": f.title}
                for f in findings
            ],
        }
        record = JournalRecord(
            role=self.role,
            direction=DIRECTION,
            operation=call.operation_id,
            method="POST",
            url=self.secrets.masked(call.url),
            status=reply.status,
            request=self.secrets.masked(json.dumps(masked_body(call.body))),
            response=self.secrets.masked(json.dumps(kept)),
            duration_ms=round(milliseconds, 3),
        )
        await self.store.journal_in_next_write(record)

    async def _journal(self) -> list[dict[str, Any]]:
        """The proxy's journal entries, newest first: each with what the client got (`status`,
        `response`), what the upstream answered (`upstream_status`) and the violations found."""
        if self.store is None:
            return []
        entries = await self.store.journal(self.role, limit=self.settings.journal_limit)
        shown = []
        for entry in entries:
            if entry.direction != DIRECTION:
                continue
            kept = entry.response if isinstance(entry.response, dict) else {}
            shown.append(
                {
                    "id": entry.id,
                    "exchange_id": kept.get("exchange_id"),
                    "at": entry.at,
                    "operation": entry.operation,
                    "method": entry.method,
                    "url": entry.url,
                    "status": entry.status,
                    "upstream_status": kept.get("upstream_status"),
                    "request": masked(entry.request),
                    "response": kept.get("answer"),
                    "duration_ms": entry.duration_ms,
                    "violations": kept.get("violations", []),
                }
            )
        return shown

    # The proxy's own answers ----------------------------------------------------------------------------

    async def _body(self, receive: Receive) -> bytes | None:
        """The request body, or None when it is over max_body_bytes (the rest is not read)."""
        limit = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def envelope(self, code: ResponseCode, reason: str, request: bytes) -> dict[str, str]:
        """An answer the proxy makes itself, in the role's envelope (codes.py), with references of
        its own and the request's input_ThirdPartyReference echoed when it can be read."""
        from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref, new_insight_reference

        if self.role == "ipg":
            sent = _text(_parsed(request), "input_ThirdPartyReference") or ""
            return ipg_answer(
                code,
                insight_reference=new_insight_reference(),
                third_party_reference=sent if _ECHOABLE.match(sent) else "",
                reason=reason,
            )
        return bank_answer(
            code,
            bank_transaction_ref=new_bank_transaction_ref(),
            bank_date_time=bank_date_time(self.settings.clock(), self.settings.timezone),
            reason=reason,
        )

    def _refusal(self, status: int, findings: Sequence[Finding], request: bytes) -> _Reply:
        """--errors: 400 (the client's request) or 502 (the upstream's answer) in the envelope, -1
        Failure, naming what broke the document."""
        first = findings[0]
        whose = "the request" if status == 400 else "the upstream's answer"
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        reason = f"refused by the proxy: {whose} breaks {first.check}: {first.title}{more}"
        return _Reply(status, _JSON, orjson.dumps(self.envelope(ResponseCode.FAILURE, reason, request)))

    def _unanswered(self, outcome: Unanswered, url: str, request: bytes) -> _Reply:
        """No answer from the upstream: 502 in the envelope, -7 or -6 as forward.Unanswered says."""
        reason = f"the proxy got no answer from the upstream at {url}: {outcome.reason}"
        return _Reply(502, _JSON, orjson.dumps(self.envelope(outcome.code, reason, request)))

    async def _envelope(
        self,
        send: Send,
        status: int,
        code: ResponseCode,
        reason: str,
        request: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self._json(send, status, self.envelope(code, reason, request), headers)

    async def _json(self, send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = orjson.dumps(body)
        pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        pairs += [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
        ]
        await send({"type": "http.response.start", "status": status, "headers": pairs})
        await send({"type": "http.response.body", "body": raw})


def _no_answer(outcome: Unanswered, exchange_id: str) -> Finding:
    """The upstream gave no answer: not_a_server_error's finding, as fuzz records a partner that did not
    answer."""
    from mpesa_atm.judgement import documented

    title = "The upstream did not answer" + (" in time" if outcome.timed_out else "")
    message = f"Received: no answer ({outcome.reason})\nDocumented: " + documented(
        "server_error", "a synchronous answer in the envelope"
    )
    return Finding("server_error", "not_a_server_error", "upstream", title, message, (exchange_id,))


@dataclass(frozen=True)
class _Reply:
    """What the client is sent: the upstream's answer as it came, or one of the proxy's own."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


_JSON = (("content-type", "application/json"),)


@dataclass(frozen=True)
class _Call:
    """One call through the proxy, as it arrived: what the rest of its exchange is built from."""

    exchange_id: str
    operation_id: str
    at: datetime  # the settings' clock
    started: float  # perf_counter
    url: str  # the upstream's
    label: str  # "POST /token-redemption"
    headers: tuple[tuple[str, str], ...]
    body: bytes
    request: dict[str, Any] | None  # the body, when it is a JSON object

    def wire(
        self,
        status: int | None,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> WireExchange:
        """The exchange as the reports show it: the request, and the upstream's answer (None: none)."""
        elapsed = time.perf_counter() - self.started
        return WireExchange(
            self.at,
            elapsed,
            "POST",
            self.url,
            self.headers,
            self.body,
            status,
            reason,
            tuple(headers),
            body,
            self.label,
        )

    def exchange(self, role: Role, status: int, answer: dict[str, Any] | None, elapsed: float) -> Exchange:
        """The exchange as the ledger reads it (`status` 0: no answer)."""
        return Exchange(
            self.exchange_id, role, self.operation_id, self.request, status, answer, self.at, elapsed
        )


def create_proxy(
    role: Role,
    settings: Settings,
    *,
    upstream: str,
    network: Network | None = None,
    timeout: float | None = None,
    strict: bool = False,
    max_response_time: float | None = None,
    listeners: Sequence[Listener] = (),
    options: tuple[tuple[str, str], ...] = (),
    ledger_of: Callable[[Any, Settings], Observer] | None = None,
    judge: Judge | None = None,
    out: Callable[[str], None] = print,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProxyApp:
    """The proxy of `role` in front of `upstream`, its store the settings' `db`, the judgement across
    exchanges `ledger_of(store, settings)`'s when given; `run` (the app's) tells `listeners` (fuzz's
    reporters) of each exchange and, at `app.run.finish()`, of the end. `judge` may be one already
    built for the role and paths (it takes a while to load the schema); `transport` reaches an
    upstream in process (tests)."""
    from mpesa_atm.fuzz.bounds import Bounds
    from mpesa_atm.mocks.storage import open_store

    judge = judge or Judge(
        role, lambda operation_id: settings.paths[operation_id], max_response_time=max_response_time
    )
    run = Run(
        role,
        upstream,
        checks=judge.check_names,
        operations=[f"POST {settings.paths[op.id]}" for op in operations_of(role)],
        strict=strict,
        bounds=Bounds(max_response_time=max_response_time),
        listeners=listeners,
        options=options,
        kept=settings.journal_limit,
        across=ledger_of is not None,
    )
    if ledger_of is None:
        run.note(
            "the rules across exchanges (duplicates, a token paid once) are not judged: this build has"
            " no ledger"
        )
    return ProxyApp(
        role,
        settings,
        upstream=Upstream(
            upstream,
            network or Network(),
            timeout if timeout is not None else settings.client_timeout,
            transport=transport,
        ),
        judge=judge,
        run=run,
        open_store=lambda: open_store(
            settings.db_path, journal_limit=settings.journal_limit, busy_timeout=settings.busy_timeout
        ),
        ledger_of=ledger_of,
        errors=settings.proxy_errors,
        out=out,
    )
