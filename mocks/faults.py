"""Fault injection: every error path of the API on demand, the way payment sandboxes offer it.

A fault is decided per API call, after the request was validated, from (first match wins): the
"offline" mode (-8), the concurrency limit (-7), the X-Mpesa-Atm-Fault header, the fault rules set
through the control API (shared by all workers in the store, so `times: 1` fires exactly once), and
the magic MSISDNs. A fault answers a response code in the envelope, waits, or breaks the connection;
the connection itself is broken by `connection_faults.ConnectionFaults`, the outermost ASGI layer,
which alone holds the server's transport; a fault asks for it through the call's SLOT_KEY slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Scope

from mpesa_atm.codes import ResponseCode
from mpesa_atm.errors import FaultError, StoreBusy
from mpesa_atm.mocks.storage import BUSY, Storage
from mpesa_atm.operations import Role, by_slug, operations_of

__all__ = [
    "CONNECTION_FAULTS",
    "FAULT_HEADER",
    "MAGIC_MSISDNS",
    "FaultError",
    "FaultRule",
    "Faults",
]

FAULT_HEADER = "X-Mpesa-Atm-Fault"
SLOT_KEY = "mpesa_atm.fault"
# WireMock's names in brackets: CONNECTION_RESET_BY_PEER, EMPTY_RESPONSE, MALFORMED_RESPONSE_CHUNK.
CONNECTION_FAULTS = ("reset", "empty", "malformed", "hang")
# control.yaml's bound of `times`: far below 2**63, past which SQLite's integers overflow.
MAX_TIMES = 1_000_000
# Codes a fault may answer (control.yaml's FaultRule lists them per role). The iPG's -3, -4, -5 and
# -9 come from its real rules and state.
ROLE_CODES = {
    "ipg": {"-1", "-2", "-6", "-7", "-8"},
    "bank": {code.value for code in ResponseCode} - {"0"},
}

# Magic MSISDNs, on unless switched off: 24390000000N answers -N (N = 1..9) on either mock;
# 2439000000NN breaks the call in a given way. Shown in the fault table of docs/mocks.md.
MAGIC_MSISDNS: dict[str, dict[str, Any]] = {
    **{f"24390000000{n}": {"response_code": f"-{n}"} for n in range(1, 10)},
    "243900000010": {"connection": "reset"},
    "243900000011": {"connection": "empty"},
    "243900000012": {"connection": "malformed"},
    "243900000013": {"connection": "hang"},
    "243900000014": {"delay_ms": 2000},
}
_MSISDN_FIELD = "input_CustomerMSISDN"


@dataclass(frozen=True)
class Delay:
    """Fixed, uniform or log-normal, as WireMock's delayDistribution."""

    fixed_ms: float = 0
    distribution: str | None = None
    lower_ms: float = 0
    upper_ms: float = 0
    median_ms: float = 0
    sigma: float = 0

    def seconds(self, rng: random.Random) -> float:
        if self.distribution == "uniform":
            return rng.uniform(self.lower_ms, self.upper_ms) / 1000
        if self.distribution == "lognormal":
            return self.median_ms * math.exp(rng.gauss(0, self.sigma)) / 1000
        return self.fixed_ms / 1000

    def as_json(self) -> dict[str, Any]:
        if self.distribution == "uniform":
            spec = {"distribution": "uniform", "lower_ms": self.lower_ms, "upper_ms": self.upper_ms}
        elif self.distribution == "lognormal":
            spec = {"distribution": "lognormal", "median_ms": self.median_ms, "sigma": self.sigma}
        else:
            return {"delay_ms": self.fixed_ms}
        return {"delay_distribution": spec}


@dataclass(frozen=True)
class FaultRule:
    """What to do to a call: answer a code, wait, break the connection; to which calls, how often."""

    operation: str | None = None  # operationId (parse takes either spelling); None: every operation
    response_code: str | None = None
    description: str | None = None
    delay: Delay | None = None
    connection: str | None = None
    processed: bool = False  # with a connection fault: the call is processed, its answer lost
    times: int | None = None  # None: until deleted or reset
    probability: float = 1.0
    match: Mapping[str, str] = field(default_factory=dict)
    id: str = ""

    @classmethod
    def parse(cls, role: Role, data: Mapping[str, Any], *, any_code: bool = False) -> FaultRule:
        """A rule from the control API's JSON (already schema-checked), a header or a magic value.

        The checks repeat the schema's (control.yaml's FaultRule): a header and the rules kept in the
        store come through here without it."""
        operation = data.get("operation")
        if operation is not None:
            named = by_slug(operation)
            if named is None or named.role != role:
                mine = ", ".join(op.id for op in operations_of(role))
                raise FaultError(f"the {role} mock has no operation {operation!r} (it has {mine})")
            operation = named.id
        code = data.get("response_code")
        if code is not None and not any_code and code not in ROLE_CODES[role]:
            allowed = ", ".join(sorted(ROLE_CODES[role], key=lambda c: -int(c)))
            raise FaultError(f"the {role} mock can be told to answer {allowed}, not {code!r}")
        connection = data.get("connection")
        if connection is not None and connection not in CONNECTION_FAULTS:
            raise FaultError(f"connection must be one of {', '.join(CONNECTION_FAULTS)}, not {connection!r}")
        delay = _parse_delay(data)
        if code is None and delay is None and connection is None:
            raise FaultError("a fault needs response_code, delay_ms, delay_distribution or connection")
        if code is not None and connection is not None:
            raise FaultError("give either response_code or connection: a broken call answers nothing")
        times = data.get("times")
        if times is not None and (not isinstance(times, int) or not 1 <= times <= MAX_TIMES):
            raise FaultError(f"times must be a whole number from 1 to {MAX_TIMES}")
        probability = float(data.get("probability", 1.0))
        if not 0 < probability <= 1:
            raise FaultError("probability must be above 0 and at most 1")
        return cls(
            operation=operation,
            response_code=code,
            description=data.get("description"),
            delay=delay,
            connection=connection,
            processed=bool(data.get("processed", False)),
            times=times,
            probability=probability,
            match=dict(data.get("match") or {}),
            id=data.get("id", ""),
        )

    def as_json(self) -> dict[str, Any]:
        """The rule as the control API takes it (and as the store keeps it), with its id."""
        out: dict[str, Any] = {"id": self.id}
        if self.operation is not None:
            out["operation"] = self.operation
        for key in ("response_code", "description", "connection"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.delay is not None:
            out |= self.delay.as_json()
        out |= {"processed": self.processed, "times": self.times, "probability": self.probability}
        if self.match:
            out["match"] = dict(self.match)
        return out

    def matches(self, operation: str, body: Mapping[str, Any]) -> bool:
        if self.operation is not None and self.operation != operation:
            return False
        return all(body.get(key) == value for key, value in self.match.items())


def _parse_delay(data: Mapping[str, Any]) -> Delay | None:
    if "delay_ms" in data and "delay_distribution" in data:
        raise FaultError("give delay_ms or delay_distribution, not both")
    if "delay_ms" in data:
        fixed = float(data["delay_ms"])
        if not 0 <= fixed <= 120_000:
            raise FaultError("delay_ms must be from 0 to 120000")
        return Delay(fixed_ms=fixed)
    spec = data.get("delay_distribution")
    if spec is None:
        return None
    kind = spec.get("distribution")
    if kind == "uniform":
        # Either order: the schema cannot say lower_ms <= upper_ms, and between them is clear.
        lower, upper = sorted((float(spec.get("lower_ms", 0)), float(spec.get("upper_ms", 0))))
        if not 0 <= lower <= upper <= 120_000:
            raise FaultError("uniform delay needs lower_ms and upper_ms from 0 to 120000")
        return Delay(distribution="uniform", lower_ms=lower, upper_ms=upper)
    if kind == "lognormal":
        median, sigma = float(spec.get("median_ms", 0)), float(spec.get("sigma", 0))
        if not (0 <= median <= 120_000 and 0 <= sigma <= 5):
            raise FaultError("lognormal delay needs median_ms from 0 to 120000 and sigma from 0 to 5")
        return Delay(distribution="lognormal", median_ms=median, sigma=sigma)
    raise FaultError("delay_distribution.distribution must be uniform or lognormal")


_HEADER_KEYS = {"operation", "response_code", "description", "delay_ms", "connection", "processed"}


def parse_header(value: str) -> dict[str, Any]:
    """`response_code=-7`, `delay_ms=1500`, `connection=reset;processed=true`: pairs split by ';'.

    `operation=token_redemption` (or `token-redemption`) makes the fault apply to that operation's
    calls only, for a client that sends one header with every call."""
    data: dict[str, Any] = {}
    for pair in value.split(";"):
        key, sep, raw = (part.strip() for part in pair.partition("="))
        if not sep or not key:
            raise FaultError(f"{FAULT_HEADER}: {pair.strip()!r} is not key=value")
        if key not in _HEADER_KEYS:
            raise FaultError(f"{FAULT_HEADER}: unknown key {key!r}")
        data[key] = raw.lower() == "true" if key == "processed" else raw
    return data


@dataclass(frozen=True)
class Modes:
    offline: bool = False
    max_concurrency: int | None = None
    magic_values: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "offline": self.offline,
            "max_concurrency": self.max_concurrency,
            "magic_values": self.magic_values,
        }


Process = Callable[[], Awaitable[dict[str, str]]]
Envelope = Callable[[ResponseCode, str | None, Mapping[str, Any]], dict[str, str]]


@dataclass(frozen=True)
class _Settings:
    """The modes and the rules that may still fire, as the store had them at `version`."""

    version: int
    modes: Modes
    rules: tuple[tuple[str, FaultRule, int | None], ...]  # (id, rule, remaining), oldest first


class Faults:
    """Decides, per API call, whether a fault applies, and applies it.

    Each worker keeps the modes and rules it read from the store until the store's config_version
    says another change was made (by any worker): a call reads one shared counter, not the store.
    `key` names the rules' and modes' rows in the store: the role's by default (a mock's); the proxy
    keeps its own (proxy/faults.py), so a mock of its role sharing the store never fires its rules."""

    def __init__(
        self,
        role: Role,
        store: Storage,
        envelope: Envelope,
        defaults: Modes,
        *,
        hang_seconds: float = 30.0,
        key: str | None = None,
    ) -> None:
        self.role = role
        self.key = key or role
        self.store = store
        self.envelope = envelope
        self.defaults = defaults
        self.hang_seconds = hang_seconds  # a "hang" holds the connection this long, then lets go
        self._rng = random.Random()
        self._settings: _Settings | None = None

    async def _current(self) -> _Settings:
        version = await self.store.config_version()
        if self._settings is None or self._settings.version != version:
            # Read after the version: a change made meanwhile shows as a newer version next call.
            candidates = await self.store.fault_candidates(self.key)
            modes = await self.store.modes_get(self.key)
            rules = tuple(
                (rule_id, FaultRule.parse(self.role, json.loads(spec)), remaining)
                for rule_id, spec, remaining in candidates
            )
            self._settings = _Settings(version, self._modes(modes), rules)
        return self._settings

    # Control API
    async def add(self, rule: FaultRule) -> FaultRule:
        stored = FaultRule(**{**rule.__dict__, "id": uuid.uuid4().hex})
        spec = json.dumps(stored.as_json())
        await self.store.fault_add(self.key, stored.id, spec, stored.times, time.time())
        return stored

    async def rules(self) -> list[dict[str, Any]]:
        return [
            {**json.loads(spec), "remaining": remaining}
            for spec, remaining in await self.store.fault_list(self.key)
        ]

    async def delete(self, rule_id: str) -> bool:
        return await self.store.fault_delete(self.key, rule_id)

    async def modes(self) -> Modes:
        return self._modes(await self.store.modes_get(self.key))

    def _modes(self, stored: Mapping[str, Any] | None) -> Modes:
        return Modes(**stored) if stored is not None else self.defaults

    async def set_modes(self, changes: Mapping[str, Any]) -> Modes:
        modes = Modes(**{**(await self.modes()).__dict__, **changes})
        await self.store.modes_set(self.key, modes.as_json())
        if "max_concurrency" in changes:  # a fresh count, without the calls of a killed worker
            await self.store.calls_clear(self.role)
        return modes

    # Per call
    async def decide(self, operation: str, body: Mapping[str, Any], header: str | None) -> FaultRule | None:
        """The fault for one call, its firing claimed (the header's, a rule's, a magic MSISDN's when
        the modes allow them), for a caller that applies it itself (the proxy); FaultError for a bad
        header, StoreBusy when the store stays busy."""
        return await self._decide(operation, body, header, await self._current())

    async def _decide(
        self, operation: str, body: Mapping[str, Any], header: str | None, settings: _Settings
    ) -> FaultRule | None:
        told = _header_rule(self.role, header) if header is not None else None
        if told is not None and told.matches(operation, body):
            return told
        for rule_id, rule, remaining in settings.rules:
            if not rule.matches(operation, body):
                continue
            if rule.probability < 1 and self._rng.random() >= rule.probability:
                continue
            if remaining is None or await self.store.fault_claim(rule_id):  # the store counts, not the copy
                return rule
        if settings.modes.magic_values:
            magic = MAGIC_MSISDNS.get(str(body.get(_MSISDN_FIELD)))
            if magic is not None:
                return FaultRule.parse(self.role, magic, any_code=True)
        return None

    async def run(
        self,
        operation: str,
        body: Mapping[str, Any],
        scope: Scope,
        process: Process,
    ) -> dict[str, str]:
        """The answer to the API call of `scope`: `process()` unless a fault says otherwise; -7 when
        the store, for the rules and modes or a count, stays busy or out of reach (StoreBusy)."""
        try:
            return await self._run(operation, body, scope, process)
        except StoreBusy:
            return self.envelope(ResponseCode.SYSTEM_TOO_BUSY, BUSY, body)

    async def _run(
        self, operation: str, body: Mapping[str, Any], scope: Scope, process: Process
    ) -> dict[str, str]:
        settings = await self._current()
        modes = settings.modes
        if modes.offline:
            return self.envelope(ResponseCode.API_OFFLINE, "the mock is set offline", body)
        # Counted across the role's workers (Storage.calls_enter), and only with a limit set: without
        # one, a call does no extra work.
        limit = modes.max_concurrency
        if limit is not None and not await self.store.calls_enter(self.role, limit):
            reason = f"more than {limit} calls under way"
            return self.envelope(ResponseCode.SYSTEM_TOO_BUSY, reason, body)
        try:
            try:
                rule = await self._decide(operation, body, _fault_header(scope), settings)
            except FaultError as exc:
                return self.envelope(ResponseCode.FAILURE, f"bad {FAULT_HEADER} header: {exc}", body)
            if rule is None:
                return await process()
            if rule.delay is not None:
                await asyncio.sleep(rule.delay.seconds(self._rng))
            if rule.response_code is not None:
                code = ResponseCode(rule.response_code)
                return self.envelope(code, rule.description or "fault injected by the harness", body)
            if rule.connection is None:
                return await process()
            answer = await process() if rule.processed else None
            if rule.connection == "hang":
                await asyncio.sleep(self.hang_seconds)
            else:
                slot = scope.get(SLOT_KEY)
                if slot is not None:
                    slot["connection"] = rule.connection
            if answer is not None:
                return answer
            return self.envelope(ResponseCode.FAILURE, f"connection fault {rule.connection}", body)
        finally:
            if limit is not None:
                # Unreachable now: the call stays counted until the count is cleared (a worker's
                # start, a change of modes, a reset), rather than a committed answer turned into -7.
                with contextlib.suppress(StoreBusy):
                    await self.store.calls_leave(self.role)


def _header_rule(role: Role, header: str) -> FaultRule | None:
    """The fault the header asks of this mock; None when it names the other mock's operation (a client
    may send one header with every call, to both mocks). A name neither mock has is a FaultError."""
    data = parse_header(header)
    named = by_slug(data["operation"]) if "operation" in data else None
    if named is not None and named.role != role:
        return None
    return FaultRule.parse(role, data)


_FAULT_HEADER_NAME = FAULT_HEADER.lower().encode()


def _fault_header(scope: Scope) -> str | None:
    """The first X-Mpesa-Atm-Fault header of the call, if any."""
    for name, value in scope["headers"]:
        if name == _FAULT_HEADER_NAME:
            return value.decode("latin-1")
    return None
