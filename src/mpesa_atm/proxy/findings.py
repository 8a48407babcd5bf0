"""What the proxy sees and what it finds: the values its parts hand each other.

A `Call` is one call as it arrived; an `Exchange` is that call through the proxy as it was seen on
the wire, parsed; a `Finding` is one break of a rule of `mpesa_atm.judgement` by one side of it: the
client (its request breaks the document) or the upstream (its answer does, alone or read with earlier
exchanges). The severity and the source of a finding are its rule's, as in `fuzz` and `verify`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mpesa_atm.judgement import RULES, Severity
from mpesa_atm.operations import Role
from mpesa_atm.reporting.exchange import Exchange as WireExchange

__all__ = ["Call", "Exchange", "Finding", "Side"]

# Who broke the rule: the client whose request the proxy forwarded, or the upstream that answered it.
Side = Literal["client", "upstream"]


@dataclass(frozen=True)
class Exchange:
    """One call through the proxy: `role` is the upstream's (the role the proxy plays), `request` and
    `answer` the JSON bodies when they parsed as objects (else None), `status` the upstream's HTTP
    status (0 when it gave none: a reset, a time-out), `at` when the request arrived (the settings'
    clock), `exchange_id` the proxy journal's id for it."""

    exchange_id: str
    role: Role
    operation_id: str
    request: Mapping[str, Any] | None
    status: int
    answer: Mapping[str, Any] | None
    at: datetime
    duration: float = 0.0  # seconds, from the request's arrival to the upstream's answer


@dataclass(frozen=True)
class Finding:
    """One break of `rule` (a name of judgement.RULES) by `side`, found by `check` (the name fuzz's
    --list-checks gives it, e.g. "replay_is_duplicate", "token_lifecycle"); `title` heads it, `message`
    is its "Received: ... / Documented: ..." text, `exchange_ids` the exchanges it reads (the earlier
    ones first, this one last)."""

    rule: str
    check: str
    side: Side
    title: str
    message: str
    exchange_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"finding of an unknown rule {self.rule!r}")

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity


@dataclass(frozen=True)
class Call:
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
