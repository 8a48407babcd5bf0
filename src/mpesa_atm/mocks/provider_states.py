"""Pact provider states: each named state a contract's interaction needs, set up on this mock's store.

The Pact verifier calls POST /_harness/provider-states before each interaction (and after, with
action "teardown"). A state name this mock does not know is refused, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpesa_atm.mocks.store import Store
from mpesa_atm.settings import Settings

__all__ = ["ProviderStates", "UnknownProviderState"]


class UnknownProviderState(LookupError):
    pass


StateHandler = Callable[[dict[str, Any]], dict[str, Any]]


class ProviderStates:
    def __init__(self, role: str, store: Store, settings: Settings) -> None:
        self.role = role
        self.store = store
        self.settings = settings
        self._setups: dict[str, StateHandler] = {}

    def apply(self, state: str, params: dict[str, Any], action: str) -> dict[str, Any]:
        if action == "teardown":
            self.store.reset(self.role)
            return {}
        try:
            setup = self._setups[state]
        except KeyError:
            known = ", ".join(sorted(self._setups)) or "none"
            raise UnknownProviderState(
                f"the {self.role} mock has no provider state {state!r} (known: {known})"
            ) from None
        return setup(params)
