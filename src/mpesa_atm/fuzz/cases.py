"""What a campaign sends: realistic valid requests, schemathesis's schema-valid and schema-invalid ones,
and the token lifecycles of the stateful run.

Realistic means what a strict partner answers with a business outcome rather than a refusal: the
document's kind of MSISDN (243...), amounts, currencies and reference shapes, the iPG credentials
given to the campaign, and references that are new in every case. References come from the seed and
the case's number, not from Hypothesis, so that they never repeat within a run and the same seed
gives the same cases.
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

from mpesa_atm.fuzz.expectations import ACTIONS, Action
from mpesa_atm.operations import operation

__all__ = [
    "DEFAULT_CURRENCIES",
    "Draft",
    "Fresh",
    "Lifecycle",
    "draft_from",
    "drafts",
    "lifecycles",
    "long_reference",
    "other_amount",
    "other_currency",
    "other_msisdn",
]

# The document's sample currencies (2.1.2.1: "USD, CDF").
DEFAULT_CURRENCIES = ("CDF", "USD")

TokenMode = Literal["exists", "other_amount", "unknown"]

_UPPER_ALNUM = string.ascii_uppercase + string.digits


class Fresh:
    """New reference values, derived from the seed, a stream name and a counter: unique and repeatable."""

    def __init__(self, seed: int, stream: str) -> None:
        self.seed = seed
        self.stream = stream
        self.count = 0

    def _digest(self, field: str) -> bytes:
        self.count += 1
        return hashlib.sha256(f"{self.seed}/{self.stream}/{self.count}/{field}".encode()).digest()

    def __call__(self, field: str) -> str:
        digest = self._digest(field)
        if field == "input_TransactionID":
            # A G2 TransactionID: 10 upper-case letters and digits (document: BVA12369A).
            return "".join(_UPPER_ALNUM[b % len(_UPPER_ALNUM)] for b in digest[:10])
        if field == "input_BankTransactionRef":
            return digest.hex()[:32]  # 32 characters, like 12345678123412341234123456789abc
        return digest.hex()[:20]  # like the document's 71c6d1f93910052de053


@dataclass(frozen=True)
class Draft:
    """The drawn part of a realistic request; the campaign adds references and credentials."""

    msisdn: str
    amount: str
    currency: str
    account_number: str | None
    token: TokenMode

    def body(self, operation_id: str, fresh: Fresh, credentials: Any) -> dict[str, str]:
        if operation(operation_id).role == "bank":
            body = {
                "input_CustomerMSISDN": self.msisdn,
                "input_Amount": self.amount,
                "input_Currency": self.currency,
                "input_TransactionID": fresh("input_TransactionID"),
            }
            if self.account_number is not None:
                body = {"input_AccountNumber": self.account_number, **body}
            return body
        body = {
            "input_Username": credentials.username,
            "input_Password": credentials.password,
            "input_CustomerMSISDN": self.msisdn,
            "input_Currency": self.currency,
            "input_BankShortcode": credentials.shortcode,
            "input_Amount": self.amount,
            "input_ThirdPartyReference": fresh("input_ThirdPartyReference"),
            "input_BankTransactionRef": fresh("input_BankTransactionRef"),
        }
        if operation_id == "token_reversal":
            body["input_TransactionID"] = fresh("input_TransactionID")
        return body


# 243 (DR Congo) then a 9-digit mobile number starting 8, like the document's 243843330333; this keeps
# clear of the mocks' magic MSISDNs (2439000000xx), which answer faults on purpose.
_SUBSCRIBERS = (810_000_000, 899_999_999)
_UNITS = (1, 5000)  # whole amounts such as 200; with cents, 0.01 to 5000.99
_ACCOUNT_NUMBERS = (10**13, 10**14 - 1)  # 14 digits, like 85000001222840


def _amounts() -> st.SearchStrategy[str]:
    whole = st.integers(*_UNITS).map(str)  # "200"
    cents = st.builds(
        lambda units, hundredths: f"{units}.{hundredths:02d}", st.integers(0, _UNITS[1]), st.integers(1, 99)
    )
    return st.one_of(whole, cents)


def _msisdns() -> st.SearchStrategy[str]:
    return st.integers(*_SUBSCRIBERS).map(lambda n: f"243{n}")


def drafts(currencies: tuple[str, ...] = DEFAULT_CURRENCIES) -> st.SearchStrategy[Draft]:
    account_numbers = st.one_of(st.none(), st.integers(*_ACCOUNT_NUMBERS).map(str))
    tokens: st.SearchStrategy[TokenMode] = st.sampled_from(("exists", "exists", "other_amount", "unknown"))
    return st.builds(
        Draft,
        msisdn=_msisdns(),
        amount=_amounts(),
        currency=st.sampled_from(currencies),
        account_number=account_numbers,
        token=tokens,
    )


def draft_from(rng: random.Random, currencies: tuple[str, ...], token: TokenMode = "exists") -> Draft:
    """A realistic draft drawn from `rng`, of the same kinds `drafts` draws, for the phases that send a
    fixed list of cases rather than Hypothesis's."""
    if rng.random() < 0.5:
        amount = str(rng.randint(*_UNITS))
    else:
        amount = f"{rng.randint(0, _UNITS[1])}.{rng.randint(1, 99):02d}"
    return Draft(
        msisdn=f"243{rng.randint(*_SUBSCRIBERS)}",
        amount=amount,
        currency=rng.choice(currencies),
        account_number=str(rng.randint(*_ACCOUNT_NUMBERS)) if rng.random() < 0.5 else None,
        token=token,
    )


@dataclass(frozen=True)
class Lifecycle:
    """One token's story in the stateful run: its details, then the calls made with it, in order."""

    msisdn: str
    amount: str
    currency: str
    actions: tuple[Action, ...]


# The token's own steps drawn three times as often as each probe: a lifecycle that pays, replays and
# reverses the token is what finds a token paid or reversed twice, and the probes are five.
_DRAWN: tuple[Action, ...] = tuple(
    action for action in ACTIONS for _ in range(3 if action in ("redeem", "reverse", "replay") else 1)
)


def lifecycles(currencies: tuple[str, ...] = DEFAULT_CURRENCIES) -> st.SearchStrategy[Lifecycle]:
    actions: st.SearchStrategy[Action] = st.sampled_from(_DRAWN)
    return st.builds(
        Lifecycle,
        msisdn=_msisdns(),
        amount=_amounts(),
        currency=st.sampled_from(currencies),
        actions=st.lists(actions, min_size=1, max_size=6).map(tuple),
    )


def other_amount(amount: str) -> str:
    """A different amount of the same shape, for a request whose details do not match the token."""
    units, _, cents = amount.partition(".")
    changed = str(int(units) + 1) if units.isdigit() else "1"
    return f"{changed}.{cents}" if cents else changed


def other_msisdn(msisdn: str) -> str:
    """Another MSISDN of the same shape (its last digit changed): another customer than the token's."""
    last = msisdn[-1:]
    changed = str((int(last) + 1) % 10) if last.isdigit() else "0"
    return msisdn[:-1] + changed


def other_currency(currency: str) -> str:
    """Another of the document's currencies (2.1.2.1: "USD, CDF") than the token's."""
    return "CDF" if currency == "USD" else "USD"


def long_reference(fresh: str) -> str:
    """An input_ThirdPartyReference of 33 characters, one over the document's "Maximum 32 characters"
    (2.1.2.1), made of `fresh` (a new reference, repeated as needed): letters and digits only."""
    return (fresh * (33 // max(1, len(fresh)) + 1))[:33]
