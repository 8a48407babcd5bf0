"""The bank mock's rules for Token Generation (document section 3).

A repeat of (MSISDN, Amount, TransactionID, Currency) is a duplicate (-3) carrying the first
reference and date-time; the same TransactionID with other details is a failure (-1); anything else
gets a new 32-character reference (0), committed before it is answered.
"""

from __future__ import annotations

from datetime import datetime

from mpesa_atm.codes import ResponseCode, bank_answer
from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.records import BankToken
from mpesa_atm.mocks.storage import BUSY, Storage
from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref, normalise_amount
from mpesa_atm.settings import Settings

__all__ = ["BankRules", "new_bank_token"]


def new_bank_token(
    settings: Settings,
    moment: datetime,
    *,
    transaction_id: str,
    msisdn: str,
    amount: str,
    currency: str,
    account_number: str | None,
) -> BankToken:
    """A token the bank issues at `moment`: a new 32-character reference, the date and time in the
    bank's time zone (3.1.3), the amount normalised."""
    return BankToken(
        bank_transaction_ref=new_bank_transaction_ref(),
        transaction_id=transaction_id,
        msisdn=msisdn,
        amount=normalise_amount(amount),
        currency=currency,
        account_number=account_number,
        bank_date_time=bank_date_time(moment, settings.timezone),
    )


class BankRules:
    def __init__(self, store: Storage, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    async def generate(self, request: dict[str, str]) -> dict[str, str]:
        moment = self.settings.clock()
        token = new_bank_token(
            self.settings,
            moment,
            transaction_id=request["input_TransactionID"],
            msisdn=request["input_CustomerMSISDN"],
            amount=request["input_Amount"],
            currency=request["input_Currency"],
            account_number=request.get("input_AccountNumber"),
        )
        date_time = token.bank_date_time
        try:
            # One INSERT ... ON CONFLICT, in the write transaction shared by this turn's calls.
            first = await self.store.in_next_write(
                lambda tx: tx.add_bank_token_once(token, moment.timestamp())
            )
        except StoreBusy:
            return bank_answer(
                ResponseCode.SYSTEM_TOO_BUSY,
                bank_transaction_ref=token.bank_transaction_ref,
                bank_date_time=date_time,
                reason=BUSY,
            )
        if first is None:
            return bank_answer(
                ResponseCode.SUCCESS,
                bank_transaction_ref=token.bank_transaction_ref,
                bank_date_time=date_time,
            )
        if (first.msisdn, first.amount, first.currency) == (token.msisdn, token.amount, token.currency):
            return bank_answer(
                ResponseCode.DUPLICATE,
                bank_transaction_ref=first.bank_transaction_ref,
                bank_date_time=first.bank_date_time,
            )
        return bank_answer(
            ResponseCode.FAILURE,
            bank_transaction_ref=token.bank_transaction_ref,
            bank_date_time=date_time,
            reason="input_TransactionID was already used with other details",
        )
