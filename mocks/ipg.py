"""The iPG mock's rules for Token Redemption and Token Reversal (document section 2).

In this order: authentication (-4), shortcode (-5), duplicate (-3, with the first answer's
reference), token lookup within the last 2 days (-9; for a reversal also its G2 TransactionID),
token details (-1), token state (-1), then success (0) committed before it is answered.
"""

from __future__ import annotations

from mpesa_atm.codes import ResponseCode, ipg_answer
from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.records import IpgToken
from mpesa_atm.mocks.storage import BUSY, Storage, Transaction
from mpesa_atm.mocks.values import duplicate_key, new_insight_reference, normalise_amount
from mpesa_atm.settings import Settings

__all__ = ["REDEMPTION", "REVERSAL", "IpgRules", "duplicate_key_of", "issued_token"]

REDEMPTION = "token_redemption"
REVERSAL = "token_reversal"

_COMPARED = (
    ("input_CustomerMSISDN", "msisdn"),
    ("input_Amount", "amount"),
    ("input_Currency", "currency"),
)


def duplicate_key_of(
    operation: str,
    *,
    msisdn: str,
    amount: str,
    currency: str,
    bank_transaction_ref: str,
    transaction_id: str,
    third_party_reference: str,
) -> str:
    """What makes two calls of `operation` the same call (2.1, 2.2: "duplicate check"): a redemption
    by its MSISDN, amount, ThirdPartyReference, currency and BankTransactionRef; a reversal by its
    TransactionID and ThirdPartyReference. `amount` is normalised."""
    if operation == REDEMPTION:
        return duplicate_key(msisdn, amount, third_party_reference, currency, bank_transaction_ref)
    return duplicate_key(transaction_id, third_party_reference)


def issued_token(
    settings: Settings,
    *,
    username: str,
    bank_transaction_ref: str,
    transaction_id: str,
    msisdn: str,
    amount: str,
    currency: str,
) -> IpgToken:
    """A token the iPG now knows, issued at the settings' clock, neither redeemed nor reversed."""
    return IpgToken(
        username=username,
        bank_transaction_ref=bank_transaction_ref,
        transaction_id=transaction_id,
        msisdn=msisdn,
        amount=normalise_amount(amount),
        currency=currency,
        created_at=settings.clock().timestamp(),
        redeemed_at=None,
        reversed_at=None,
    )


class IpgRules:
    def __init__(self, store: Storage, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def redeem(self, request: dict[str, str]) -> dict[str, str]:
        return await self._process(REDEMPTION, request)

    async def reverse(self, request: dict[str, str]) -> dict[str, str]:
        return await self._process(REVERSAL, request)

    async def _process(self, operation: str, request: dict[str, str]) -> dict[str, str]:
        third_party_reference = request["input_ThirdPartyReference"]

        def answer(
            code: ResponseCode, reason: str | None = None, reference: str | None = None
        ) -> dict[str, str]:
            return ipg_answer(
                code,
                insight_reference=reference or new_insight_reference(),
                third_party_reference=third_party_reference,
                reason=reason,
            )

        account = self.settings.bank(request["input_Username"])
        if account is None or not await account.password_checked(request["input_Password"]):
            return answer(ResponseCode.AUTHENTICATION_FAILED)
        if request["input_BankShortcode"] not in account.shortcodes:
            return answer(
                ResponseCode.BANK_DETAILS_INVALID,
                f"shortcode {request['input_BankShortcode']} is not linked to {account.username}",
            )

        amount = normalise_amount(request["input_Amount"])
        key = duplicate_key_of(
            operation,
            msisdn=request["input_CustomerMSISDN"],
            amount=amount,
            currency=request["input_Currency"],
            bank_transaction_ref=request["input_BankTransactionRef"],
            transaction_id=request.get("input_TransactionID", ""),  # a reversal's only
            third_party_reference=third_party_reference,
        )
        now = self.settings.clock().timestamp()

        def decide(tx: Transaction) -> dict[str, str]:
            first = tx.first_ipg_answer(operation, account.username, key)
            if first is not None:
                return answer(ResponseCode.DUPLICATE, reference=first)
            token = tx.ipg_token(account.username, request["input_BankTransactionRef"])
            if token is None or token.created_at < now - self.settings.token_ttl.total_seconds():
                return answer(
                    ResponseCode.TRANSACTION_DETAILS_NOT_FOUND,
                    f"no token with this input_BankTransactionRef in the last {_hours(self.settings)} hours",
                )
            if operation == REVERSAL and request["input_TransactionID"] != token.transaction_id:
                return answer(
                    ResponseCode.TRANSACTION_DETAILS_NOT_FOUND,
                    "input_TransactionID is not the token's G2 TransactionID",
                )
            refusal = _refusal(operation, request, amount, token)
            if refusal is not None:
                return answer(ResponseCode.FAILURE, refusal)
            reference = new_insight_reference()
            tx.record_ipg_success(
                operation=operation,
                token=token,
                duplicate_key=key,
                insight_reference=reference,
                third_party_reference=third_party_reference,
                at=now,
            )
            return answer(ResponseCode.SUCCESS, reference=reference)

        try:
            # In the write transaction shared by this turn's calls, after those queued before it: a
            # token spent by one of them is spent for this one.
            return await self.store.in_next_write(decide)
        except StoreBusy:
            return answer(ResponseCode.SYSTEM_TOO_BUSY, BUSY)


def _hours(settings: Settings) -> str:
    return f"{settings.token_ttl.total_seconds() / 3600:g}"


def _refusal(operation: str, request: dict[str, str], amount: str, token: IpgToken) -> str | None:
    """Why a found token cannot be used for this request, or None."""
    given = {**request, "input_Amount": amount}
    differing = [field for field, attribute in _COMPARED if given[field] != getattr(token, attribute)]
    if differing:
        return f"{', '.join(differing)} {'does' if len(differing) == 1 else 'do'} not match the token"
    if token.reversed_at is not None:
        return "the token was already reversed"
    if operation == REDEMPTION and token.redeemed_at is not None:
        return "the token was already redeemed"
    return None
