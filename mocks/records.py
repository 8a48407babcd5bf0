"""What the mocks keep, as both storage backends (mocks/store.py, mocks/pg_store.py) and their
callers read and write it: the tokens, the journal's records and entries, and which tables hold
each role's tokens and transactions. Neither backend owns these; both import them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "KEPT_AS",
    "LEDGER_TABLES",
    "MOCK_DIRECTIONS",
    "ROLE_TABLES",
    "BankToken",
    "FirstAnswer",
    "Generation",
    "IpgToken",
    "JournalEntry",
    "JournalRecord",
    "Kept",
    "Payments",
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
# The tables of the proxy's judgement across exchanges (proxy/ledger.py): what it saw answered, not
# what a mock decided, so neither role's reset nor its counts touch them.
LEDGER_TABLES: tuple[str, ...] = ("ledger_answers", "ledger_tokens", "ledger_generations")
# The journal entries of a mock: the calls it answered and those it made; a proxy on the same store
# journals its exchanges as "proxy".
MOCK_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")


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


@dataclass(frozen=True)
class FirstAnswer:
    """The ledger's record of the first answer 0 to a duplicate set: its reference
    (output_InsightReference or output_BankTransactionRef; None when that answer had none) and the
    proxy's id of that exchange."""

    reference: str | None
    exchange_id: str


@dataclass(frozen=True)
class Payments:
    """What the ledger saw an iPG do with one token: the exchanges whose redemption and reversal it
    answered 0 (None: none yet)."""

    redeemed_by: str | None
    reversed_by: str | None


@dataclass(frozen=True)
class Generation:
    """A reference the ledger saw a bank give in a Token Generation answer: `generated` when answered
    0 (a token, with the request's details, `created_at` the request's arrival), else it came only in a
    refusal, where nothing rests on it (docs/spec-notes.md row 23): no token has it."""

    bank_transaction_ref: str
    generated: bool
    transaction_id: str
    msisdn: str
    amount: str
    currency: str
    created_at: float
    exchange_id: str


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
