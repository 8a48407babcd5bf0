"""Faults in passing: the mocks' fault rules applied to real traffic through the proxy (docs/proxy.md).

`POST`/`GET /_harness/faults` and `DELETE /_harness/faults/{id}` take the mocks' rules (control.yaml's
`FaultRule`), and the `X-Mpesa-Atm-Fault` header a call's own fault. Parsing, matching and claiming are
the mocks' `Faults`, over the same store tables (`times` claimed in one write, so every worker and
every proxy on one `--db` fires a rule as often as it says), under the proxy's own key: a mock of the
same role on that store never fires the proxy's rules, nor the proxy the mock's. What a rule does here:
a code is the proxy's own answer, never forwarded; a delay waits, then forwards; a connection fault
breaks the connection without forwarding, or with `processed: true` after the upstream answered (the
call committed, its answer judged and kept, the client without it).
"""

from __future__ import annotations

import asyncio
import hmac
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from mpesa_atm.codes import ResponseCode
from mpesa_atm.errors import FaultError, StoreBusy
from mpesa_atm.mocks.connection_faults import breaking, instead_of
from mpesa_atm.mocks.faults import FAULT_HEADER, FaultRule, Faults, Modes
from mpesa_atm.mocks.storage import BUSY, Storage
from mpesa_atm.operations import CONTROL_PREFIX, Role
from mpesa_atm.proxy.answers import Envelopes, Reply, parsed
from mpesa_atm.settings import Settings

__all__ = ["FAULTS_PATH", "Applied", "ProxyFaults", "key_of", "token_given"]

FAULTS_PATH = f"{CONTROL_PREFIX}/faults"
_BROKEN = ("reset", "empty", "malformed")  # "hang" holds the answer, then sends it
_HEADER_NAME = FAULT_HEADER.lower()
_NEEDS_TOKEN = "the proxy's fault rules need 'Authorization: Bearer <control token>'"


def key_of(role: Role) -> str:
    """The store's name for the proxy's rules of `role` (a mock's are under the role itself)."""
    return f"proxy-{role}"


@dataclass(frozen=True)
class Applied:
    """A fault that applies to one call (its delay already waited): `source` says whose it is, for
    the journal and the line."""

    rule: FaultRule
    source: str
    hang_seconds: float

    @property
    def forwards(self) -> bool:
        """Whether the call goes to the upstream: not for a code, nor for a connection broken before."""
        rule = self.rule
        return rule.response_code is None and (rule.connection is None or rule.processed)

    @property
    def said(self) -> str:
        """`rule 3fa2... (connection=reset, processed)`: the fault, for the journal and the line."""
        rule = self.rule
        what = [
            f"{key}={value}"
            for key, value in (("response_code", rule.response_code), ("connection", rule.connection))
            if value is not None
        ]
        if rule.delay is not None:
            what.append(",".join(f"{k}={v}" for k, v in rule.delay.as_json().items()))
        if rule.processed and rule.connection is not None:
            what.append("processed")
        return f"{self.source} ({', '.join(what)})"

    def own(self, envelopes: Envelopes, request: bytes) -> Reply:
        """The proxy's answer to a call it does not forward: the rule's code in the envelope (HTTP 200,
        as the mocks answer a fault), or the -1 a broken connection withholds (or hang sends late)."""
        if self.rule.response_code is not None:
            reason = self.rule.description or "fault injected by the harness"
            return envelopes.reply(200, ResponseCode(self.rule.response_code), reason, request)
        return envelopes.reply(200, ResponseCode.FAILURE, f"connection fault {self.rule.connection}", request)

    async def hold(self) -> None:
        """`hang`: no answer for hang_seconds (longer than a client's time-out), then the answer."""
        if self.rule.connection == "hang":
            await asyncio.sleep(self.hang_seconds)

    def sending(self, send: Send) -> Send:
        """`send`, or what breaks the answer instead (the mocks' ConnectionFaults' way)."""
        connection = self.rule.connection
        return breaking(send, connection) if connection in _BROKEN else send

    def journalled(self, reply: Reply) -> tuple[int | None, bytes]:
        """What the client got, as the mocks journal a broken answer: no status (reset, empty) or the
        malformed 200, and `{"connection_fault", "sent", "withheld": the answer it did not get}`."""
        connection = self.rule.connection
        if connection not in _BROKEN:
            return reply.status, reply.body
        instead = instead_of(connection)
        sent = instead.body.decode("latin-1") if instead.body is not None else None
        withheld = parsed(reply.body) or reply.body.decode("utf-8", "replace")
        return instead.status, orjson.dumps(
            {"connection_fault": instead.fault, "sent": sent, "withheld": withheld}
        )


Answer = tuple[int, Any, Sequence[tuple[str, str]]]
BodyOf = Callable[[Receive], Awaitable[bytes | None]]  # the app's reader: None when over max_body_bytes


class ProxyFaults:
    """The fault rules of one proxy's worker: its control routes and, per call, the fault that applies."""

    def __init__(self, role: Role, store: Storage, settings: Settings, envelopes: Envelopes) -> None:
        from mpesa_atm.spec import load_spec

        def envelope(code: ResponseCode, reason: str | None, body: Mapping[str, Any]) -> dict[str, str]:
            return envelopes.envelope(code, reason or "", orjson.dumps(dict(body)))

        self.role = role
        self.settings = settings
        # No magic MSISDNs here: real traffic's numbers are the partner's, not the harness's.
        self.faults = Faults(
            role,
            store,
            envelope,
            Modes(magic_values=False),
            hang_seconds=settings.hang_seconds,
            key=key_of(role),
        )
        self.schema = load_spec("control.yaml", role=role)["components"]["schemas"]["FaultRule"]
        self._rng = random.Random()

    # Per call -----------------------------------------------------------------------------------------

    async def decide(
        self, operation_id: str, request: Mapping[str, Any] | None, scope: Scope
    ) -> Applied | None:
        """The fault of this call (the header's, else the oldest matching rule's, its firing claimed in
        the store), its delay waited; a bad header is the proxy's -1, a store that stays busy its -7,
        each answered without forwarding, as the mocks answer them."""
        header = next((v.decode("latin-1") for n, v in scope["headers"] if n == _HEADER_NAME.encode()), None)
        try:
            rule = await self.faults.decide(operation_id, request or {}, header)
        except FaultError as exc:
            bad = FaultRule(response_code="-1", description=f"bad {FAULT_HEADER} header: {exc}")
            return Applied(bad, f"the {FAULT_HEADER} header", self.settings.hang_seconds)
        except StoreBusy:
            busy = FaultRule(response_code="-7", description=f"{BUSY}: the fault rules could not be read")
            return Applied(busy, "the store", self.settings.hang_seconds)
        if rule is None:
            return None
        if rule.delay is not None:
            await asyncio.sleep(rule.delay.seconds(self._rng))
        source = f"rule {rule.id}" if rule.id else f"the {FAULT_HEADER} header"
        return Applied(rule, source, self.settings.hang_seconds)

    @staticmethod
    def forwarded(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The client's headers less X-Mpesa-Atm-Fault: the proxy applied it, a mock upstream must not
        apply it again."""
        return [(name, value) for name, value in headers if name.lower() != _HEADER_NAME]

    # Control routes -----------------------------------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send, body_of: BodyOf) -> None:
        """`/_harness/faults[/{id}]`, in the control API's format (`{"error", "detail"}`)."""
        status, answer, headers = await self._control(scope, receive, body_of)
        raw = b"" if answer is None else orjson.dumps(answer)
        pairs = [(b"content-length", str(len(raw)).encode())]
        if answer is not None:
            pairs.append((b"content-type", b"application/json"))
        pairs += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        await send({"type": "http.response.start", "status": status, "headers": pairs})
        await send({"type": "http.response.body", "body": raw})

    async def _control(self, scope: Scope, receive: Receive, body_of: BodyOf) -> Answer:
        if not token_given(scope, self.settings.control_token):
            return 401, _error("Unauthorized", _NEEDS_TOKEN), (("www-authenticate", "Bearer"),)
        method, path = scope["method"], scope["path"]
        try:
            if path == FAULTS_PATH and method == "POST":
                return await self._add(scope, await body_of(receive))
            if path == FAULTS_PATH and method in ("GET", "HEAD"):
                return 200, {"faults": await self.faults.rules()}, ()
            if path.startswith(FAULTS_PATH + "/") and method == "DELETE":
                fault_id = path.removeprefix(FAULTS_PATH + "/")
                if not await self.faults.delete(fault_id):
                    return 404, _error("Not Found", f"no fault rule {fault_id!r}"), ()
                return 204, None, ()
        except StoreBusy as exc:
            return 503, _error("Service Unavailable", f"{BUSY}: {exc}; try again"), (("retry-after", "1"),)
        allowed = "GET, POST" if path == FAULTS_PATH else "DELETE"
        return 405, _error("Method Not Allowed", f"{method} is not allowed on {path}"), (("allow", allowed),)

    async def _add(self, scope: Scope, raw: bytes | None) -> Answer:
        from connexion.exceptions import BadRequestProblem

        from mpesa_atm.mocks.validation import check_body, parse_body

        if raw is None:
            limit = self.settings.max_body_bytes
            return 413, _error("Content Too Large", f"the body is over {limit} bytes"), ()
        media = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"content-type"), "")
        if media.split(";")[0].strip().lower() != "application/json":
            return 415, _error("Unsupported Media Type", "a fault rule is sent as application/json"), ()
        try:
            body = parse_body(raw)
            check_body(self.schema, body)  # control.yaml's FaultRule, this role's codes and operations
            rule = FaultRule.parse(self.role, body)
        except BadRequestProblem as exc:
            return 400, _error("Bad Request", str(exc.detail)), ()
        except FaultError as exc:
            return 400, _error("Bad Request", str(exc)), ()
        return 201, (await self.faults.add(rule)).as_json(), ()


def _error(error: str, detail: str) -> dict[str, str]:
    return {"error": error, "detail": detail}


def token_given(scope: Scope, token: str | None) -> bool:
    """Whether the call may use the proxy's control routes: no control token is set, or it carries
    `Authorization: Bearer <token>` (compared in constant time)."""
    if not token:
        return True
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, given = bytes(value).partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())
    return False
