"""References and normalised values the mocks make: random, never derived from counts."""

from __future__ import annotations

import json
import secrets
import string
import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = [
    "bank_date_time",
    "duplicate_key",
    "new_bank_transaction_ref",
    "new_insight_reference",
    "new_third_party_reference",
    "new_transaction_id",
    "normalise_amount",
]

_G2_ALPHABET = string.ascii_uppercase + string.digits


def new_bank_transaction_ref() -> str:
    """32 characters, like the document's 12345678123412341234123456789abc."""
    return uuid.uuid4().hex


def new_insight_reference() -> str:
    """19 lower-case characters, like the document's 12sdxq3634dadsas242."""
    return uuid.uuid4().hex[:19]


def new_third_party_reference() -> str:
    """20 characters, like the document's 71c6d1f93910052de053."""
    return uuid.uuid4().hex[:20]


def new_transaction_id() -> str:
    """A G2 TransactionID: 10 upper-case letters and digits, like M-Pesa's (document: BVA12369A)."""
    return "".join(secrets.choice(_G2_ALPHABET) for _ in range(10))


def normalise_amount(amount: str) -> str:
    """The amount with two decimals, so "200", "200.0" and "200.00" are the same amount."""
    return f"{Decimal(amount):.2f}"


def bank_date_time(moment: datetime, timezone: str) -> str:
    """output_BankDateTime: YYYYMMDD HH24MISS in the bank's time zone."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y%m%d %H%M%S")


def duplicate_key(*fields: str) -> str:
    return json.dumps(fields, separators=(",", ":"))
