"""Pact provider states: each named state a contract's interaction needs, set up on this mock's store.

The Pact verifier calls POST /_harness/provider-states before each interaction (and after, with
action "teardown"). A state name this mock does not know, or parameters it cannot satisfy, are
refused with the reason, never ignored.
"""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable
from typing import Any

from mpesa_atm.errors import StoreConflict, UnknownProviderState, UnsatisfiableProviderState
from mpesa_atm.mocks.bank import new_bank_token
from mpesa_atm.mocks.ipg import REDEMPTION, REVERSAL, duplicate_key_of, issued_token
from mpesa_atm.mocks.storage import Storage, Transaction
from mpesa_atm.mocks.values import (
    new_insight_reference,
    normalise_amount,
)
from mpesa_atm.operations import Role
from mpesa_atm.settings import Settings
from mpesa_atm.states import (
    A_TOKEN_EXISTS,
    A_TOKEN_WAS_GENERATED,
    NO_TOKEN_EXISTS,
    NO_TOKEN_WAS_GENERATED,
    STATE_NAMES,
    THE_BANK_IS_REGISTERED,
    THE_REDEMPTION_WAS_MADE,
    THE_REVERSAL_WAS_MADE,
)

__all__ = ["ProviderStates"]


StateHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ProviderStates:
    """The states of one role. Setting up a state that seeds tokens ("a token exists", "no token
    exists" and the bank's two) first empties the store of what it seeds, so that what the mock held
    before verification cannot change an interaction's outcome: on the iPG, the tokens and
    transactions of the state's bank only (a shared iPG sandbox serves other banks, whose contract
    runs must not lose their tokens), on the bank mock the role's whole store. The states that build
    on a token ("the redemption was already made", ...) come after it in the interaction and keep it.
    Teardown empties what setup emptied: the bank named in the params, else the role's whole store."""

    def __init__(self, role: Role, store: Storage, settings: Settings) -> None:
        self.role = role
        self.store = store
        self.settings = settings
        setups: dict[str, dict[str, StateHandler]] = {
            "ipg": {
                THE_BANK_IS_REGISTERED: self._bank_is_registered,
                A_TOKEN_EXISTS: self._token_exists,
                NO_TOKEN_EXISTS: self._no_token_exists,
                THE_REDEMPTION_WAS_MADE: self._redemption_was_made,
                THE_REVERSAL_WAS_MADE: self._reversal_was_made,
            },
            "bank": {
                A_TOKEN_WAS_GENERATED: self._token_was_generated,
                NO_TOKEN_WAS_GENERATED: self._no_token_was_generated,
            },
        }
        self._setups = setups[role]
        assert frozenset(self._setups) == STATE_NAMES[role]

    @property
    def names(self) -> frozenset[str]:
        """The states this role can set up."""
        return frozenset(self._setups)

    async def apply(self, state: str, params: dict[str, Any], action: str) -> dict[str, Any]:
        if action == "teardown":
            await self.store.reset(self.role, self._bank_torn_down(state, params))
            return {}
        try:
            setup = self._setups[state]
        except KeyError:
            known = ", ".join(sorted(self._setups)) or "none"
            raise UnknownProviderState(
                f"the {self.role} mock has no provider state {state!r} (known: {known})"
            ) from None
        return await setup(params)

    def _bank_torn_down(self, state: str, params: dict[str, Any]) -> str | None:
        """The bank whose tokens a teardown forgets: the iPG state's `username`; None (the whole
        store) on the bank mock, whose states name no bank, or for a state with no username."""
        username = params.get("username") if self.role == "ipg" else None
        if username is not None and (not isinstance(username, str) or not username):
            raise UnsatisfiableProviderState(f"{state!r}: the parameter username must be a non-empty string")
        return username

    # iPG mock
    async def _bank_is_registered(self, params: dict[str, Any]) -> dict[str, Any]:
        """Checks the configuration: a mock cannot register a bank at run time (its workers share
        the settings they started with), so a contract's bank must be configured."""
        given = _strings(THE_BANK_IS_REGISTERED, params, ("username", "password", "shortcode"))
        account = self.settings.bank(given["username"])
        if account is None:
            raise UnsatisfiableProviderState(
                f"{THE_BANK_IS_REGISTERED!r}: the iPG mock has no bank {given['username']!r}"
                " (configure it under [[ipg.banks]])"
            )
        if not await account.password_checked(given["password"]):
            raise UnsatisfiableProviderState(
                f"{THE_BANK_IS_REGISTERED!r}: the iPG mock's bank {account.username!r} has another password"
            )
        if given["shortcode"] not in account.shortcodes:
            raise UnsatisfiableProviderState(
                f"{THE_BANK_IS_REGISTERED!r}: shortcode {given['shortcode']} is not linked to"
                f" {account.username!r} in the iPG mock (linked: {', '.join(account.shortcodes)})"
            )
        return {}

    def _configured_bank(self, state: str, username: str) -> str:
        if self.settings.bank(username) is None:
            raise UnsatisfiableProviderState(f"{state!r}: the iPG mock has no bank {username!r}")
        return username

    async def _token_exists(self, params: dict[str, Any]) -> dict[str, Any]:
        given = _strings(
            A_TOKEN_EXISTS,
            params,
            ("username", "bank_transaction_ref", "transaction_id", "msisdn", "amount", "currency"),
        )
        token = issued_token(
            self.settings,
            username=self._configured_bank(A_TOKEN_EXISTS, given["username"]),
            bank_transaction_ref=given["bank_transaction_ref"],
            transaction_id=given["transaction_id"],
            msisdn=given["msisdn"],
            amount=_amount(A_TOKEN_EXISTS, given["amount"]),
            currency=given["currency"],
        )
        await self.store.reset(self.role, token.username)
        await self.store.write(lambda tx: tx.add_ipg_token(token))
        return {}

    async def _no_token_exists(self, params: dict[str, Any]) -> dict[str, Any]:
        given = _strings(NO_TOKEN_EXISTS, params, ("username", "bank_transaction_ref"))
        await self.store.reset(self.role, self._configured_bank(NO_TOKEN_EXISTS, given["username"]))
        return {}

    async def _redemption_was_made(self, params: dict[str, Any]) -> dict[str, Any]:
        given = _strings(
            THE_REDEMPTION_WAS_MADE, params, ("username", "bank_transaction_ref", "third_party_reference")
        )
        return await self._record_success(THE_REDEMPTION_WAS_MADE, REDEMPTION, given)

    async def _reversal_was_made(self, params: dict[str, Any]) -> dict[str, Any]:
        given = _strings(
            THE_REVERSAL_WAS_MADE, params, ("username", "bank_transaction_ref", "third_party_reference")
        )
        return await self._record_success(THE_REVERSAL_WAS_MADE, REVERSAL, given)

    async def _record_success(self, state: str, operation: str, given: dict[str, str]) -> dict[str, Any]:
        """Records the success that a first call would have left, with the token's details."""
        reference = new_insight_reference()
        third_party_reference = given["third_party_reference"]

        def record(tx: Transaction) -> None:
            token = tx.ipg_token(given["username"], given["bank_transaction_ref"])
            if token is None:
                raise UnsatisfiableProviderState(
                    f"{state!r}: the iPG mock has no token {given['bank_transaction_ref']!r} for"
                    f" {given['username']!r} (set up {A_TOKEN_EXISTS!r} before this state)"
                )
            key = duplicate_key_of(
                operation,
                msisdn=token.msisdn,
                amount=token.amount,
                currency=token.currency,
                bank_transaction_ref=token.bank_transaction_ref,
                transaction_id=token.transaction_id,
                third_party_reference=third_party_reference,
            )
            tx.record_ipg_success(
                operation=operation,
                token=token,
                duplicate_key=key,
                insight_reference=reference,
                third_party_reference=third_party_reference,
                at=self.settings.clock().timestamp(),
            )

        try:
            await self.store.write(record)
        except StoreConflict:
            raise UnsatisfiableProviderState(
                f"{state!r}: token {given['bank_transaction_ref']!r} already has this operation recorded"
            ) from None
        return {"insight_reference": reference}

    # Bank mock
    async def _token_was_generated(self, params: dict[str, Any]) -> dict[str, Any]:
        given = _strings(
            A_TOKEN_WAS_GENERATED,
            params,
            ("transaction_id", "msisdn", "amount", "currency"),
            optional=("account_number",),
        )
        moment = self.settings.clock()
        token = new_bank_token(
            self.settings,
            moment,
            transaction_id=given["transaction_id"],
            msisdn=given["msisdn"],
            amount=_amount(A_TOKEN_WAS_GENERATED, given["amount"]),
            currency=given["currency"],
            account_number=given.get("account_number"),
        )
        await self.store.reset(self.role)
        await self.store.write(lambda tx: tx.add_bank_token(token, moment.timestamp()))
        return {"bank_transaction_ref": token.bank_transaction_ref, "bank_date_time": token.bank_date_time}

    async def _no_token_was_generated(self, params: dict[str, Any]) -> dict[str, Any]:
        _strings(NO_TOKEN_WAS_GENERATED, params, ("transaction_id",))
        await self.store.reset(self.role)
        return {}


def _strings(
    state: str, params: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """The state's parameters, each a non-empty string; a missing or unexpected one is refused."""
    missing = [name for name in required if not isinstance(params.get(name), str) or not params[name]]
    if missing:
        raise UnsatisfiableProviderState(
            f"{state!r} needs the parameter(s) {', '.join(missing)} as non-empty strings"
        )
    unexpected = sorted(set(params) - set(required) - set(optional))
    if unexpected:
        raise UnsatisfiableProviderState(f"{state!r} has no parameter(s) {', '.join(unexpected)}")
    for name in optional:
        if name in params and not isinstance(params[name], str):
            raise UnsatisfiableProviderState(f"{state!r}: the parameter {name} must be a string")
    return {name: params[name] for name in (*required, *optional) if name in params}


def _amount(state: str, amount: str) -> str:
    try:
        if decimal.Decimal(amount).is_finite():
            return normalise_amount(amount)
    except decimal.InvalidOperation:
        pass
    raise UnsatisfiableProviderState(f"{state!r}: amount {amount!r} is not a number")
