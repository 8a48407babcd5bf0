"""References and normalised values the mocks make: random, never derived from counts."""

from __future__ import annotations

import functools
import json
import math
import os
import random
import secrets
import string
import time
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
# References need to be unique and unpredictable to a test, not secret: a generator of their own,
# seeded from the OS (and again in a forked child), instead of a system call per reference. Not
# random's shared one: a test or Hypothesis seeding it would make the mock repeat its references.
_references = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_references.seed)


def _hex(digits: int) -> str:
    return f"{_references.getrandbits(4 * digits):0{digits}x}"


def new_bank_transaction_ref() -> str:
    """32 characters, like the document's 12345678123412341234123456789abc: the microsecond it was
    made in 13 hexadecimal digits, then 19 random ones. As unique and unpredictable as needed (76
    random bits), and in the order they are made, so that the store's index on them grows at one end
    rather than gaining a random page per token, which costs SQLite less a token (benchmarks/README.md,
    "Figures behind the code")."""
    return f"{time.time_ns() // 1000:013x}{_hex(19)}"


_BASE36 = string.digits + string.ascii_lowercase  # in this order, their order as text


def new_insight_reference() -> str:
    """19 lower-case characters, like the document's 12sdxq3634dadsas242: the millisecond it was made
    in 8 base-36 digits, then 11 random hexadecimal ones (44 bits, for the calls of one
    millisecond), in the order they are made for the same reason as the bank's references."""
    return f"{_base36_millisecond(time.time_ns() // 1_000_000)}{_hex(11)}"


@functools.lru_cache(maxsize=4)  # one a millisecond, for every reference made in it
def _base36_millisecond(millisecond: int) -> str:
    digits = []
    for _ in range(8):
        millisecond, digit = divmod(millisecond, 36)
        digits.append(_BASE36[digit])
    return "".join(reversed(digits))


def new_third_party_reference() -> str:
    """20 characters, like the document's 71c6d1f93910052de053."""
    return _hex(20)


def new_transaction_id() -> str:
    """A G2 TransactionID: 10 upper-case letters and digits, like M-Pesa's (document: BVA12369A)."""
    return "".join(secrets.choice(_G2_ALPHABET) for _ in range(10))


@functools.lru_cache(maxsize=4096)  # a few amounts come again and again
def normalise_amount(amount: str) -> str:
    """The amount with two decimals, so "200", "200.0" and "200.00" are the same amount."""
    return f"{Decimal(amount):.2f}"


def bank_date_time(moment: datetime, timezone: str) -> str:
    """output_BankDateTime: YYYYMMDD HH24MISS in the bank's time zone."""
    return _bank_date_time(math.floor(moment.timestamp()), timezone)


@functools.lru_cache(maxsize=16)  # under load, many calls a second share their answer's second
def _bank_date_time(second: int, timezone: str) -> str:
    return datetime.fromtimestamp(second, ZoneInfo(timezone)).strftime("%Y%m%d %H%M%S")


# json.dumps with separators builds an encoder a call; this one is built once (same text).
_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"))


def duplicate_key(*fields: str) -> str:
    return _KEY_ENCODER.encode(fields)
