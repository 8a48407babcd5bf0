"""The Pact provider states' names, shared by both sides: the contracts write them into the pact
files, the mocks (`mocks/provider_states.py`) set them up. A leaf module, so that the contracts and
the CLI can name the states without importing the mocks."""

from __future__ import annotations

from collections.abc import Mapping

from mpesa_atm.operations import Role

__all__ = [
    "A_TOKEN_EXISTS",
    "A_TOKEN_WAS_GENERATED",
    "NO_TOKEN_EXISTS",
    "NO_TOKEN_WAS_GENERATED",
    "STATE_NAMES",
    "THE_BANK_IS_REGISTERED",
    "THE_REDEMPTION_WAS_MADE",
    "THE_REVERSAL_WAS_MADE",
]

# The iPG's states (a bank's contract asks for them).
THE_BANK_IS_REGISTERED = "the bank is registered"
A_TOKEN_EXISTS = "a token exists"
NO_TOKEN_EXISTS = "no token exists"
THE_REDEMPTION_WAS_MADE = "the redemption was already made"
THE_REVERSAL_WAS_MADE = "the reversal was already made"
# The bank's states (the iPG's contract asks for them).
A_TOKEN_WAS_GENERATED = "a token was generated for the transaction"
NO_TOKEN_WAS_GENERATED = "no token was generated for the transaction"

STATE_NAMES: Mapping[Role, frozenset[str]] = {
    "ipg": frozenset(
        {
            THE_BANK_IS_REGISTERED,
            A_TOKEN_EXISTS,
            NO_TOKEN_EXISTS,
            THE_REDEMPTION_WAS_MADE,
            THE_REVERSAL_WAS_MADE,
        }
    ),
    "bank": frozenset({A_TOKEN_WAS_GENERATED, NO_TOKEN_WAS_GENERATED}),
}
