"""The names both sides of the contracts share: the pacticipants, and the provider states.

A Pact Broker, the pact files and `mpesa-atm verify` all identify the two sides by these names;
the state names are the ones the mocks' provider-states endpoint serves (compared by a test).
"""

from __future__ import annotations

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
PROVIDER_NAMES = {"ipg": IPG, "bank": BANK}

# Provider states of the iPG.
THE_BANK_IS_REGISTERED = "the bank is registered"
A_TOKEN_EXISTS = "a token exists"
NO_TOKEN_EXISTS = "no token exists"
THE_REDEMPTION_WAS_MADE = "the redemption was already made"
THE_REVERSAL_WAS_MADE = "the reversal was already made"
# Provider states of the bank.
A_TOKEN_WAS_GENERATED = "a token was generated for the transaction"
NO_TOKEN_WAS_GENERATED = "no token was generated for the transaction"
