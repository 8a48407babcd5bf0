"""What the proxy's ledger reads of an exchange (proxy/ledger.py): the fields of the request its
rules compare, its duplicate key as the mocks make it (`mocks.ipg.duplicate_key_of`; `generation_key`
for Token Generation, the bank mock's repeat), and the answer's code and reference."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any, Final

from mpesa_atm.codes import ResponseCode
from mpesa_atm.fuzz.expectations import Action
from mpesa_atm.mocks.ipg import REDEMPTION, REVERSAL, duplicate_key_of
from mpesa_atm.mocks.records import Generation
from mpesa_atm.mocks.values import duplicate_key, normalise_amount
from mpesa_atm.proxy.findings import Exchange

__all__ = [
    "DETAILS",
    "GENERATION",
    "REDEMPTION",
    "REFERENCE",
    "REVERSAL",
    "Seen",
    "generation_key",
    "read",
    "text",
]

GENERATION = "token_generation"
# The answer's reference a repeat must carry again (fuzz's replay_is_duplicate), by the upstream's role.
REFERENCE = {"ipg": "output_InsightReference", "bank": "output_BankTransactionRef"}

# Answers that say the request was not looked at: the platform's bad days (docs/spec-notes.md row 17)
# and the credentials, which come before anything about a token (row 15).
_NOT_LOOKED_AT: Final = frozenset(
    code.value
    for code in (
        ResponseCode.G2_ERROR,
        ResponseCode.AUTHENTICATION_FAILED,
        ResponseCode.BANK_DETAILS_INVALID,
        ResponseCode.REQUEST_TIME_OUT,
        ResponseCode.SYSTEM_TOO_BUSY,
        ResponseCode.API_OFFLINE,
    )
)

# The details a redemption must share with its token's generation: the field, the Generation's
# attribute, and fuzz's lifecycle action that changes it.
DETAILS: tuple[tuple[str, str, Action], ...] = (
    ("input_CustomerMSISDN", "msisdn", "redeem_other_msisdn"),
    ("input_Amount", "amount", "redeem_other_amount"),
    ("input_Currency", "currency", "redeem_other_currency"),
)


def generation_key(*, msisdn: str, amount: str, currency: str, transaction_id: str) -> str:
    """What makes two Token Generations the same call, as the bank mock reads it (mocks/bank.py): the
    same MSISDN, amount, TransactionID and currency (3.1; the document's BankShortcode is no field of
    the request). `amount` is normalised."""
    return duplicate_key(msisdn, amount, transaction_id, currency)


@dataclass(frozen=True)
class Seen:
    """One exchange as the ledger reads it: the request's fields it needs, the answer's code and
    reference; `scope` is the bank username of an iPG call ("" for Token Generation)."""

    exchange: Exchange
    operation: str
    scope: str
    key: str
    fields: Mapping[str, str]
    code: str | None
    reference: str | None

    @property
    def judged(self) -> bool:
        """Whether the upstream's answer is held to the history (else only the client's request is)."""
        return self.code is not None and self.code not in _NOT_LOOKED_AT

    @property
    def at(self) -> float:
        return self.exchange.at.timestamp()

    def differing(self, generated: Generation) -> list[tuple[str, str]]:
        """The request's fields that differ from the token's generation, with the generation's values."""
        compared = [(field, getattr(generated, attribute)) for field, attribute, _ in DETAILS]
        if self.operation == REVERSAL:
            compared.append(("input_TransactionID", generated.transaction_id))
        return [(field, value) for field, value in compared if self.fields[field] != value]


def text(body: Mapping[str, Any] | None, key: str) -> str | None:
    """The body's string field `key`, or None when it is absent, not a string, or there is no body."""
    value = body.get(key) if body is not None else None
    return value if isinstance(value, str) else None


def _amount(amount: str) -> str:
    """The amount as the mocks compare it ("200" is "200.00"), or as given when it is no number."""
    try:
        return normalise_amount(amount)
    except (InvalidOperation, ValueError):
        return amount


_FIELDS = {
    GENERATION: ("input_CustomerMSISDN", "input_Amount", "input_Currency", "input_TransactionID"),
    REDEMPTION: (
        "input_Username",
        "input_CustomerMSISDN",
        "input_Amount",
        "input_Currency",
        "input_BankTransactionRef",
        "input_ThirdPartyReference",
    ),
    REVERSAL: (
        "input_Username",
        "input_CustomerMSISDN",
        "input_Amount",
        "input_Currency",
        "input_BankTransactionRef",
        "input_ThirdPartyReference",
        "input_TransactionID",
    ),
}
_ROLE_OF = {GENERATION: "bank", REDEMPTION: "ipg", REVERSAL: "ipg"}


def read(exchange: Exchange) -> Seen | None:
    """What the ledger needs of `exchange`, or None when it tells nothing across exchanges: another
    operation, or a request without one of the fields its duplicate check reads (the proxy's checks of
    one exchange find that request)."""
    operation = exchange.operation_id
    names = _FIELDS.get(operation)
    if names is None or _ROLE_OF[operation] != exchange.role:
        return None
    fields: dict[str, str] = {}
    for name in names:
        value = text(exchange.request, name)
        if value is None:
            return None
        fields[name] = value
    fields["input_Amount"] = _amount(fields["input_Amount"])
    if operation == GENERATION:
        key = generation_key(
            msisdn=fields["input_CustomerMSISDN"],
            amount=fields["input_Amount"],
            currency=fields["input_Currency"],
            transaction_id=fields["input_TransactionID"],
        )
    else:
        key = duplicate_key_of(
            operation,
            msisdn=fields["input_CustomerMSISDN"],
            amount=fields["input_Amount"],
            currency=fields["input_Currency"],
            bank_transaction_ref=fields["input_BankTransactionRef"],
            transaction_id=fields.get("input_TransactionID", ""),
            third_party_reference=fields["input_ThirdPartyReference"],
        )
    return Seen(
        exchange=exchange,
        operation=operation,
        scope=fields.get("input_Username", ""),
        key=key,
        fields=fields,
        code=text(exchange.answer, "output_ResponseCode"),
        reference=text(exchange.answer, REFERENCE[exchange.role]),
    )
