"""What the mocks keep, as both storage backends (mocks/store.py, mocks/pg_store.py) and their
callers read and write it: the tokens, the journal's records and entries, and which tables hold
each role's tokens and transactions. Neither backend owns these; both import them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "KEPT_AS",
    "ROLE_TABLES",
    "BankToken",
    "IpgToken",
    "JournalEntry",
    "JournalRecord",
    "Kept",
    "loads_body",
]

# The tables of each role's tokens and transactions: what a reset of the role empties and what
# retention prunes, in this order (a transaction before the token it was made with). Names of our
# own, never the caller's text, so that a statement may name them.
ROLE_TABLES: dict[str, tuple[str, ...]] = {
    "bank": ("bank_tokens",),
    "ipg": ("ipg_transactions", "ipg_tokens"),
}
# What each of those tables holds, in Kept's words.
KEPT_AS = {"bank_tokens": "tokens", "ipg_tokens": "tokens", "ipg_transactions": "transactions"}


@dataclass(frozen=True)
class Kept:
    """What the store holds of one role (Storage.counts): what `serve` says it kept from an earlier
    run, since a token or transaction kept makes the same call answer differently (a duplicate)."""

    tokens: int = 0
    transactions: int = 0
    fault_rules: int = 0
    modes: bool = False  # set through the control API (PUT /_harness/modes), so not the defaults

    def __bool__(self) -> bool:
        return bool(self.tokens or self.transactions or self.fault_rules or self.modes)

    def words(self) -> str:
        """`3 tokens, 1 transaction, 1 fault rule, modes`: what is there, in the banner's words."""
        counted = {"token": self.tokens, "transaction": self.transactions, "fault rule": self.fault_rules}
        said = [f"{n} {name}{'s' if n != 1 else ''}" for name, n in counted.items() if n]
        return ", ".join([*said, "modes"] if self.modes else said)


@dataclass(frozen=True)
class BankToken:
    bank_transaction_ref: str
    transaction_id: str
    msisdn: str
    amount: str
    currency: str
    account_number: str | None
    bank_date_time: str


@dataclass(frozen=True)
class IpgToken:
    username: str
    bank_transaction_ref: str
    transaction_id: str
    msisdn: str
    amount: str
    currency: str
    created_at: float
    redeemed_at: float | None
    reversed_at: float | None


class JournalRecord(NamedTuple):
    """An exchange to journal: request and response as JSON text (or text, when not JSON).

    A named tuple: one is made per call, in a third of the time of a frozen dataclass."""

    role: str
    direction: str
    operation: str | None
    method: str
    url: str
    status: int | None
    request: str
    response: str
    duration_ms: float


@dataclass(frozen=True)
class JournalEntry:
    id: int
    at: str
    role: str
    direction: str
    operation: str | None
    method: str
    url: str
    status: int | None
    request: Any
    response: Any
    duration_ms: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "direction": self.direction,
            "operation": self.operation,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "request": self.request,
            "response": self.response,
            "duration_ms": self.duration_ms,
        }


def loads_body(text: str) -> Any:
    """A journalled request or response as it was: JSON when it was JSON, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
