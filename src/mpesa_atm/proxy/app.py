"""The proxy's ASGI app: plain ASGI, no framework's per-call machinery in the path of the traffic.

A POST to one of the role's operations is judged on the client's side, forwarded to the upstream,
judged on the upstream's side (one exchange by fuzz's checks, then across exchanges by the ledger),
journalled in the store, shown as a line on stdout, and answered with the upstream's answer unchanged
(status, end-to-end headers, body bytes), plus `X-Mpesa-Atm-Violations` when something broke. With
`--errors` a request that breaks the document is refused (400) and an answer that breaks it is
replaced (502), each in the envelope naming the violation. No answer from the upstream is a 502 in the
envelope. `GET /_harness/journal` and `GET /_harness/violations` show what went through, passwords
masked; `/_harness/faults` takes the mocks' fault rules, applied in passing (proxy/faults.py); anything
else is 404 in the envelope, as the mocks answer it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from starlette.types import Message, Receive, Scope, Send

from mpesa_atm.codes import ResponseCode
from mpesa_atm.errors import StoreError
from mpesa_atm.masking import Secrets, masked_text
from mpesa_atm.mocks.records import LEDGER_TABLES
from mpesa_atm.mocks.retention import Retention
from mpesa_atm.operations import CONTROL_PREFIX, Role, operations_of
from mpesa_atm.proxy.answers import Envelopes, Reply, no_answer, parsed, text
from mpesa_atm.proxy.evidence import Run, curl_of, line_of
from mpesa_atm.proxy.faults import FAULTS_PATH, Applied, ProxyFaults, token_given
from mpesa_atm.proxy.findings import Call, Exchange, Finding
from mpesa_atm.proxy.forward import Unanswered, Upstream, decoded
from mpesa_atm.proxy.journal import DIRECTION, entries_shown, record_of, violations_shown
from mpesa_atm.proxy.judge import Judge, Judged, Seen
from mpesa_atm.reporting.exchange import Exchange as WireExchange
from mpesa_atm.settings import Settings

if TYPE_CHECKING:
    from schemathesis import Case

__all__ = ["DIRECTION", "VIOLATIONS_HEADER", "Observer", "ProxyApp"]

_VIEWS = (f"{CONTROL_PREFIX}/journal", f"{CONTROL_PREFIX}/violations")
_NEEDS_TOKEN = {
    "error": "Unauthorized",
    "detail": "the proxy's journal needs 'Authorization: Bearer <control token>'",
}

log = logging.getLogger("mpesa_atm.proxy")


class _NotParsed:
    """What a body parsed is when it is not known yet (None is a body that is no JSON object)."""


_NOT_PARSED = _NotParsed()

VIOLATIONS_HEADER = "X-Mpesa-Atm-Violations"


class Observer(Protocol):
    """The judgement across exchanges (proxy/ledger.py's Ledger): what an exchange breaks read with
    the earlier ones the store keeps."""

    async def observe(self, exchange: Exchange) -> tuple[Finding, ...]: ...


class ProxyApp:
    """The proxy of `role` in front of `upstream`. `store` (opened in the lifespan, from `open_store`)
    keeps the journal; `observer` (made with it by `ledger_of`) judges across exchanges; the fault
    rules (`faults`: with it, ProxyFaults) break calls in passing; `run` tells fuzz's reporters; `out`
    writes each exchange's line."""

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
        faults: bool = True,
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
        self.with_faults = faults
        self.faults: ProxyFaults | None = None
        self.pruning: Retention | None = None
        self.by_path = {settings.paths[op.id]: op.id for op in operations_of(role)}
        self.served = ", ".join(f"POST {path}" for path in self.by_path)
        # The passwords masked by value (the configured ones) as well as input_Password by name.
        self.secrets = Secrets.of_banks(settings.banks, settings.bank_password)
        self.secrets.masked_all()  # their pattern compiled now, not in the first call
        self.envelopes = Envelopes(role, settings)

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
        elif scope["method"] in ("GET", "HEAD") and path in _VIEWS:
            if not token_given(scope, self.settings.control_token):  # the journal's as the faults'
                await self._json(send, 401, _NEEDS_TOKEN, {"www-authenticate": "Bearer"})
            else:
                await self._view(send, path)
        elif self.faults is not None and (path == FAULTS_PATH or path.startswith(FAULTS_PATH + "/")):
            await self.faults.serve(scope, receive, send, self._body)
        elif path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            detail = (
                f"the proxy serves GET {CONTROL_PREFIX}/journal, GET {CONTROL_PREFIX}/violations"
                f" and {FAULTS_PATH}"
            )
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
                    if self.with_faults:
                        self.faults = ProxyFaults(self.role, self.store, self.settings, self.envelopes)
                    if self._ledger_of:  # its tables pruned as the mocks' are (the retention setting)
                        self.ledger = self._ledger_of(self.store, self.settings)
                        self.pruning = Retention(self.store, self.role, self.settings, tables=LEDGER_TABLES)
                        self.pruning.start()
                    self.upstream.open()
                except Exception as exc:
                    log.exception("the proxy could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
                if self.run.hands_off:  # one of several workers: said, as it may be restarted
                    self.out(f"  worker {os.getpid()} ready")
            elif message["type"] == "lifespan.shutdown":
                try:  # a worker's of several: its exchanges handed over to the main process
                    self.run.close()
                except Exception:
                    log.exception("the proxy could not hand its exchanges over")
                if self.pruning is not None:
                    await self.pruning.stop()
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
        call = Call(
            exchange_id=uuid.uuid4().hex,
            operation_id=operation_id,
            at=at,
            started=started,
            url=self.upstream.url(path, scope["query_string"].decode("latin-1")),
            label=f"POST {path}",
            headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]),
            body=body,
            request=parsed(body),
        )
        seen = Seen(operation_id, call.headers, body)
        case, client = self._client_side(seen, call.exchange_id)
        if self.errors and any(self.run.failing(f) for f in client.findings):
            # Never forwarded: the client hears why, the upstream nothing (nor the ledger).
            refused = [f for f in client.findings if self.run.failing(f)]
            wire = call.wire(None, "refused by the proxy (--errors)")
            await self._finish(send, call, wire, self.envelopes.refusal(400, refused, body), client, None)
            return
        fault = await self.faults.decide(operation_id, call.request, scope) if self.faults else None
        if fault is not None and not fault.forwards:  # the proxy's own answer: the upstream sees nothing
            wire = call.wire(None, f"fault injected by the proxy: {fault.said}")
            await self._finish(send, call, wire, fault.own(self.envelopes, body), client, None, fault)
            return
        headers = ProxyFaults.forwarded(call.headers) if self.faults else call.headers
        outcome = await self.upstream.post(call.url, headers, body)
        if isinstance(outcome, Unanswered):
            wire = call.wire(None, outcome.reason)
            across = await self._observe(call.exchange(self.role, 0, None, wire.elapsed))
            judged = Judged((*client.findings, no_answer(outcome, call.exchange_id), *across), client.applied)
            reply = self.envelopes.unanswered(outcome, call.url, body)
            await self._finish(send, call, wire, reply, judged, None, fault)
            return
        answer_body = decoded(outcome.body, outcome.headers)  # as the checks read it
        wire = call.wire(outcome.status, outcome.reason, outcome.headers, answer_body)
        seen = Seen(
            operation_id, call.headers, body, outcome.status, outcome.headers, answer_body, wire.elapsed
        )
        upstream = self._upstream_side(seen, case, call.exchange_id)
        answer = parsed(answer_body)
        across = await self._observe(call.exchange(self.role, outcome.status, answer, wire.elapsed))
        judged = Judged((*client.findings, *upstream.findings, *across), (*client.applied, *upstream.applied))
        broken = [f for f in (*upstream.findings, *across) if f.side == "upstream" and self.run.failing(f)]
        if self.errors and broken:
            await self._finish(
                send, call, wire, self.envelopes.refusal(502, broken, body), judged, answer, fault
            )
            return
        reply = Reply(outcome.status, outcome.headers, outcome.body)
        # The client gets the answer as it came: parsed already, unless it came compressed.
        as_sent = answer if answer_body is outcome.body else _NOT_PARSED
        await self._finish(send, call, wire, reply, judged, answer, fault, as_sent)

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
        call: Call,
        wire: WireExchange,
        reply: Reply,
        judged: Judged,
        answer: dict[str, Any] | None,
        fault: Applied | None = None,
        as_sent: dict[str, Any] | _NotParsed | None = _NOT_PARSED,
    ) -> None:
        """Sends the client `reply` (with the header naming the checks that found something), then
        journals the exchange, tells the run and prints its line: the evidence is kept once the
        answer is on its way (or broken by `fault`: kept all the same), so that the client waits only
        for what decides the answer. `answer`: the upstream's, parsed; `as_sent`: `reply`'s body
        parsed (`parsed`), when it is known already."""
        if fault is not None:
            await fault.hold()
        findings = judged.findings
        headers = [(name, value) for name, value in reply.headers if name.lower() != "content-length"]
        headers.append(("content-length", str(len(reply.body))))
        marked = list(dict.fromkeys(f.check for f in findings))
        if marked:
            headers.append((VIOLATIONS_HEADER, ", ".join(marked)))
        sending = fault.sending(send) if fault is not None else send
        try:
            await sending(
                {
                    "type": "http.response.start",
                    "status": reply.status,
                    "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                }
            )
            await sending({"type": "http.response.body", "body": reply.body})
        finally:
            await self._keep(call, wire, reply, judged, answer, fault, as_sent)

    async def _keep(
        self,
        call: Call,
        wire: WireExchange,
        reply: Reply,
        judged: Judged,
        answer: dict[str, Any] | None,
        fault: Applied | None,
        as_sent: dict[str, Any] | _NotParsed | None,
    ) -> None:
        """The exchange's evidence: journalled (what the client got, a broken answer as the mocks
        journal it), told to the run, its line printed."""
        # A finding quotes what it received (an answer may echo a password): masked as the journal is.
        findings = tuple(
            dataclasses.replace(f, title=self._masked(f.title), message=self._masked(f.message))
            for f in judged.findings
        )
        milliseconds = wire.elapsed * 1000
        status, got = fault.journalled(reply) if fault is not None else (reply.status, reply.body)
        got_object = parsed(got) if fault is not None or isinstance(as_sent, _NotParsed) else as_sent
        said = fault.said if fault is not None else None
        reproduce = curl_of(wire, call.request, self.upstream.network) if findings else ""
        try:
            if self.store is not None:
                record = record_of(
                    self.role,
                    exchange_id=call.exchange_id,
                    operation_id=call.operation_id,
                    url=call.url,
                    request=call.body,
                    status=status,
                    upstream_status=wire.status,
                    answer=got,
                    findings=findings,
                    milliseconds=milliseconds,
                    secrets=self.secrets,
                    fault=said,
                    reproduce=reproduce,
                    request_object=call.request,
                    answer_object=got_object,
                )
                await self.store.journal_in_next_write(record)
        except Exception:  # the journal is evidence, not the traffic
            log.exception("the journal could not take exchange %s", call.exchange_id)
        at = call.at.astimezone(UTC)
        self.run.exchange(
            wire,
            operation=call.label,
            applied=judged.applied,
            code=text(answer, "output_ResponseCode"),
            description=text(answer, "output_ResponseDesc"),
            findings=findings,
            reproduce=reproduce,
            at=at,
        )
        shown_code = text(got_object, "output_ResponseCode")  # what the client got
        line = line_of(at, self.role, call.label, status, shown_code, milliseconds, findings)
        self.out(line if said is None else f"{line} FAULT {said}")

    def _masked(self, words: str) -> str:
        """`words` with the configured passwords masked by value, and any input_Password's value."""
        return self.secrets.masked(masked_text(words))

    async def _view(self, send: Send, path: str) -> None:
        """The journal or the violations, from the store; a store out of reach or busy past its wait
        (another worker holding the journal's lock) is a 503 saying so, never a 500."""
        try:
            kept = await self._journal()
        except StoreError as exc:
            detail = f"the store cannot be read now: {exc}"
            await self._json(
                send, 503, {"error": "Service Unavailable", "detail": detail}, {"retry-after": "1"}
            )
            return
        if path == _VIEWS[0]:
            await self._json(send, 200, {"entries": entries_shown(kept)})
        else:
            await self._json(send, 200, {"violations": violations_shown(kept)})

    async def _journal(self) -> list[Any]:
        """The proxy's entries the store keeps (the newest journal_limit), newest first: every worker's
        and every proxy's of the role on the store."""
        if self.store is None:
            return []
        return list(
            await self.store.journal(self.role, limit=self.settings.journal_limit, directions=(DIRECTION,))
        )

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

    async def _envelope(
        self,
        send: Send,
        status: int,
        code: ResponseCode,
        reason: str,
        request: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self._json(send, status, self.envelopes.envelope(code, reason, request), headers)

    async def _json(self, send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = orjson.dumps(body)
        pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        pairs += [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
        ]
        await send({"type": "http.response.start", "status": status, "headers": pairs})
        await send({"type": "http.response.body", "body": raw})
