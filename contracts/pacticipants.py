"""The names both sides of the contracts share: the pacticipants, and the provider states.

A Pact Broker, the pact files and `mpesa-atm verify` all identify the two sides by these names;
the state names are `mpesa_atm.states`', which the mocks' provider-states endpoint serves.
"""

from __future__ import annotations

from mpesa_atm.operations import Role
from mpesa_atm.states import (
    A_TOKEN_EXISTS,
    A_TOKEN_WAS_GENERATED,
    NO_TOKEN_EXISTS,
    NO_TOKEN_WAS_GENERATED,
    THE_BANK_IS_REGISTERED,
    THE_REDEMPTION_WAS_MADE,
    THE_REVERSAL_WAS_MADE,
)

__all__ = [
    "A_TOKEN_EXISTS",
    "A_TOKEN_WAS_GENERATED",
    "BANK",
    "IPG",
    "NO_TOKEN_EXISTS",
    "NO_TOKEN_WAS_GENERATED",
    "PROVIDER_NAMES",
    "THE_BANK_IS_REGISTERED",
    "THE_REDEMPTION_WAS_MADE",
    "THE_REVERSAL_WAS_MADE",
]

# The partner bank: consumer of Token Redemption and Token Reversal, provider of Token Generation.
BANK = "generic-atm-bank"
# The iNSight Payment Gateway: the other way round.
IPG = "generic-atm-ipg"

# role (as `mpesa-atm serve` and `mpesa-atm verify` name it) -> pacticipant name
PROVIDER_NAMES: dict[Role, str] = {"ipg": IPG, "bank": BANK}
