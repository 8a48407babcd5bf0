"""Pact contracts of the API both ways, and their verification against a provider.

The bank is the consumer of the iPG (Token Redemption and Token Reversal), the iPG the consumer of
the bank (Token Generation). The pact files of record are in `pacts/`; `mpesa-atm verify` replays them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mpesa_atm.contracts.pacticipants import BANK, IPG, PROVIDER_NAMES

if TYPE_CHECKING:
    from mpesa_atm.contracts.generate import ConsumerContractError, exercise, generate_pacts, pact_dir
    from mpesa_atm.contracts.interactions import INTERACTIONS, Interaction
    from mpesa_atm.contracts.report import write_junit
    from mpesa_atm.contracts.verify import (
        Broker,
        ProviderUnreachable,
        Publication,
        Report,
        VerificationError,
        verify_provider,
    )

__all__ = [
    "BANK",
    "INTERACTIONS",
    "IPG",
    "PROVIDER_NAMES",
    "Broker",
    "ConsumerContractError",
    "Interaction",
    "ProviderUnreachable",
    "Publication",
    "Report",
    "VerificationError",
    "exercise",
    "generate_pacts",
    "pact_dir",
    "verify_provider",
    "write_junit",
]

# Imported on first use: the CLI loads this package for its `verify` options on every start, and
# the rest (Pact's matchers, the clients, the OpenAPI documents) is needed only to run it.
_LAZY = {
    "ConsumerContractError": "generate",
    "exercise": "generate",
    "generate_pacts": "generate",
    "pact_dir": "generate",
    "INTERACTIONS": "interactions",
    "Interaction": "interactions",
    "Broker": "verify",
    "ProviderUnreachable": "verify",
    "Publication": "verify",
    "Report": "verify",
    "VerificationError": "verify",
    "verify_provider": "verify",
    "write_junit": "report",
}


def __getattr__(name: str) -> object:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
