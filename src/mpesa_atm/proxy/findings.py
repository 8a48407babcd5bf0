"""What the proxy sees and what it finds: the two values its parts hand each other.

An `Exchange` is one call through the proxy as it was seen on the wire, parsed; a `Finding` is one
break of a rule of `mpesa_atm.judgement` by one side of it: the client (its request breaks the
document) or the upstream (its answer does, alone or read with earlier exchanges). The severity and
the source of a finding are its rule's, as in `fuzz` and `verify`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mpesa_atm.judgement import RULES, Severity
from mpesa_atm.operations import Role

__all__ = ["Exchange", "Finding", "Side"]

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
