"""The control API under /_harness/ (openapi/control.yaml): health, reset, journal, seeding, drivers.

The drivers play the other side of the withdrawal flow: the iPG mock asks a bank for a token, the
bank mock redeems or reverses one at the iPG, each through the reference clients, and journals the
call it sent.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from mpesa_atm.clients import BankClient, Exchange, IpgClient, PartnerError
from mpesa_atm.errors import FaultError, StoreConflict, UnknownProviderState, UnsatisfiableProviderState
from mpesa_atm.mocks.faults import FaultRule, Faults
from mpesa_atm.mocks.ipg import issued_token
from mpesa_atm.mocks.provider_states import ProviderStates
from mpesa_atm.mocks.records import MOCK_DIRECTIONS, IpgToken, JournalRecord
from mpesa_atm.mocks.storage import BUSY, Storage
from mpesa_atm.mocks.values import new_third_party_reference, new_transaction_id
from mpesa_atm.operations import Role, by_slug
from mpesa_atm.settings import Settings

__all__ = ["ControlHandlers"]

Answer = tuple[dict[str, Any], int]
Unhealthy = tuple[dict[str, Any], int, dict[str, str]]


def _error(status: int, error: str, detail: str) -> Answer:
    return {"error": error, "detail": detail}, status


class ControlHandlers:
    def __init__(
        self,
        role: Role,
        store: Storage,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.role = role
        self.store = store
        self.settings = settings
        self.transport = transport
        self.provider_states = ProviderStates(role, store, settings)
        self.faults: Faults  # set by the app factory, which builds the fault layer

    async def health(self) -> Answer | Unhealthy:
        """200 "ok", or 503 with the reason when this worker cannot use its store (written, read, or
        its file gone): what a load balancer or a test waits on should not be told "ok" while every
        call is answered -7. The worker's own view (another worker may differ for a moment)."""
        trouble = await self.store.health()
        if trouble is not None:
            detail = f"{BUSY}: {trouble}; try again"
            return {"error": "Service Unavailable", "detail": detail}, 503, {"Retry-After": "1"}
        return {"status": "ok", "role": self.role}, 200

    async def reset(self, username: str | None = None) -> Answer:
        """`username` comes only to the iPG mock: the bank's document has no such parameter (its
        tokens belong to no bank username), so connexion refuses it there with a 400."""
        if username is None:
            await self.store.reset(self.role)
            kept = "tokens, transactions" if self.role == "ipg" else "tokens"
            return {"reset": self.role, "scope": f"everything: {kept}, fault rules, modes, the journal"}, 200
        if self.settings.bank(username) is None:
            return _error(404, "Not Found", f"no bank {username!r} is configured")
        await self.store.reset(self.role, username)
        scope = f"{username}'s tokens and transactions; other banks, fault rules, modes and the journal kept"
        return {"reset": self.role, "username": username, "scope": scope}, 200

    async def journal(self, operation: str | None = None, limit: int = 100) -> Answer:
        if operation is not None:  # either spelling (the schema's enum has both); entries keep the id
            named = by_slug(operation)
            operation = named.id if named is not None else operation
        # A proxy's exchanges on the same store are the proxy's to show.
        entries = await self.store.journal(
            self.role, operation=operation, limit=limit, directions=MOCK_DIRECTIONS
        )
        return {"entries": [entry.as_json() for entry in entries]}, 200

    async def add_fault(self, body: dict[str, Any]) -> Answer:
        try:
            parsed = FaultRule.parse(self.role, body)
        except FaultError as exc:
            return _error(400, "Bad Request", str(exc))
        rule = await self.faults.add(parsed)
        return rule.as_json(), 201

    async def list_faults(self) -> Answer:
        return {"faults": await self.faults.rules()}, 200

    async def delete_fault(self, fault_id: str) -> Answer | tuple[None, int]:
        if not await self.faults.delete(fault_id):
            return _error(404, "Not Found", f"no fault rule {fault_id!r}")
        return None, 204

    async def get_modes(self) -> Answer:
        return (await self.faults.modes()).as_json(), 200

    async def set_modes(self, body: dict[str, Any]) -> Answer:
        return (await self.faults.set_modes(body)).as_json(), 200

    async def provider_state(self, body: dict[str, Any]) -> Answer:
        try:
            state, params, action = body["state"], body.get("params") or {}, body.get("action", "setup")
            produced = await self.provider_states.apply(state, params, action)
        except UnknownProviderState as exc:
            return _error(404, "Not Found", str(exc))
        except UnsatisfiableProviderState as exc:
            return _error(409, "Conflict", str(exc))
        return produced, 200

    async def _journal_outbound(self, operation: str, exchange: Exchange) -> None:
        record = JournalRecord(
            role=self.role,
            direction="outbound",
            operation=operation,
            method="POST",
            url=exchange.url,
            status=exchange.status,
            request=json.dumps(exchange.request),
            response=json.dumps(exchange.response),
            duration_ms=exchange.duration_ms,
        )
        await self.store.journal_add_many([record])

    # iPG mock
    def _bank_for(self, username: str | None) -> Any:
        if username is None:
            return self.settings.banks[0]
        return self.settings.bank(username)

    async def seed_token(self, body: dict[str, str]) -> Answer:
        account = self._bank_for(body.get("username"))
        if account is None:
            return _error(404, "Not Found", f"no bank {body['username']!r} is configured")
        token = await self._record_token(
            account.username, body["bank_transaction_ref"], body["transaction_id"], body
        )
        if token is None:
            return _error(409, "Conflict", f"{account.username} already has a token with this reference")
        return {**body, "amount": token.amount, "username": account.username}, 201

    async def _record_token(
        self, username: str, bank_transaction_ref: str, transaction_id: str, details: dict[str, str]
    ) -> IpgToken | None:
        """Records a token the iPG mock now knows; None if the bank already has one with that reference."""
        token = issued_token(
            self.settings,
            username=username,
            bank_transaction_ref=bank_transaction_ref,
            transaction_id=transaction_id,
            msisdn=details["msisdn"],
            amount=details["amount"],
            currency=details["currency"],
        )
        try:
            await self.store.write(lambda tx: tx.add_ipg_token(token))
        except StoreConflict:
            return None
        return token

    async def start_withdrawal(self, body: dict[str, str]) -> Answer:
        account = self._bank_for(body.get("username"))
        if account is None:
            return _error(404, "Not Found", f"no bank {body['username']!r} is configured")
        client = BankClient(
            account.url or self.settings.bank_url,
            path=self.settings.paths["token_generation"],
            timeout=self.settings.outbound_timeout,
            transport=self.transport,
        )
        transaction_id = new_transaction_id()
        try:
            result = await client.generate_token(
                msisdn=body["msisdn"],
                amount=body["amount"],
                currency=body["currency"],
                transaction_id=transaction_id,
                account_number=body.get("account_number"),
            )
        except PartnerError as exc:
            await self._journal_outbound("token_generation", exc.exchange)
            return _error(502, "Bad Gateway", str(exc))
        await self._journal_outbound("token_generation", result.exchange)
        if not result.ok or len(result.bank_transaction_ref) != 32:
            return {
                "error": "Bad Gateway",
                "detail": f"the bank answered {result.response_code} {result.description!r}",
                "bank_response": result.body,
            }, 502
        reference = result.bank_transaction_ref
        if await self._record_token(account.username, reference, transaction_id, body) is None:
            return _error(
                502, "Bad Gateway", "the bank answered a reference it had already given another token"
            )
        return {
            "transaction_id": transaction_id,
            "bank_transaction_ref": result.bank_transaction_ref,
            "bank_response": result.body,
        }, 201

    # Bank mock
    async def start_redemption(self, body: dict[str, str]) -> Answer:
        return await self._drive("token_redemption", body)

    async def start_reversal(self, body: dict[str, str]) -> Answer:
        return await self._drive("token_reversal", body)

    async def _drive(self, operation: str, body: dict[str, Any]) -> Answer:
        reference = body["bank_transaction_ref"]
        token = await self.store.write(lambda tx: tx.bank_token(reference))
        if token is None:
            return _error(404, "Not Found", "this bank mock generated no token with that reference")
        settings = self.settings
        timeout = body["timeout_ms"] / 1000 if "timeout_ms" in body else settings.outbound_timeout
        client = IpgClient(
            settings.ipg_url,
            username=settings.bank_username,
            password=settings.bank_password,
            shortcode=settings.bank_shortcode,
            redemption_path=settings.paths["token_redemption"],
            reversal_path=settings.paths["token_reversal"],
            timeout=timeout,
            transport=self.transport,
        )
        details = {
            "msisdn": body.get("msisdn", token.msisdn),
            "amount": body.get("amount", _plain_amount(token.amount)),
            "currency": body.get("currency", token.currency),
            "third_party_reference": body.get("third_party_reference", new_third_party_reference()),
            "bank_transaction_ref": token.bank_transaction_ref,
        }
        try:
            if operation == "token_redemption":
                result = await client.redeem_token(**details)
            else:
                result = await client.reverse_token(**details, transaction_id=token.transaction_id)
        except PartnerError as exc:
            await self._journal_outbound(operation, exc.exchange)
            if operation != "token_redemption":
                return _error(502, "Bad Gateway", str(exc))
            # The customer's funds are in doubt: the redemption may or may not have been made.
            # As the document intends, the bank reverses the token (with a reference of its own).
            reversal = await self._reverse_after_lost_answer(client, details, token.transaction_id)
            return {
                "error": "Bad Gateway",
                "detail": f"{exc}; the bank mock sent a Token Reversal",
                "request": exc.exchange.request,
                "reversal": reversal,
            }, 502
        await self._journal_outbound(operation, result.exchange)
        return {"request": result.exchange.request, "ipg_response": result.body}, 200

    async def _reverse_after_lost_answer(
        self, client: IpgClient, details: dict[str, str], transaction_id: str
    ) -> dict[str, Any]:
        reversal = {**details, "third_party_reference": new_third_party_reference()}
        try:
            result = await client.reverse_token(**reversal, transaction_id=transaction_id)
        except PartnerError as exc:
            await self._journal_outbound("token_reversal", exc.exchange)
            return {"request": exc.exchange.request, "ipg_response": None, "error": str(exc)}
        await self._journal_outbound("token_reversal", result.exchange)
        return {"request": result.exchange.request, "ipg_response": result.body}


def _plain_amount(amount: str) -> str:
    """200.00 -> 200, 200.50 -> 200.50: the form the document's samples use."""
    return amount[:-3] if amount.endswith(".00") else amount
