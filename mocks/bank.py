"""The bank mock's rules for Token Generation (document section 3).

A repeat of (MSISDN, Amount, TransactionID, Currency) is a duplicate (-3) carrying the first
reference and date-time; the same TransactionID with other details is a failure (-1); anything else
gets a new 32-character reference (0), committed before it is answered.
"""

from __future__ import annotations

from mpesa_atm.codes import ResponseCode, bank_answer
from mpesa_atm.mocks.store import BankToken, Store, StoreBusy
from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref, normalise_amount
from mpesa_atm.settings import Settings

__all__ = ["BankRules"]


class BankRules:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def now(self) -> str:
        return bank_date_time(self.settings.clock(), self.settings.timezone)

    async def generate(self, request: dict[str, str]) -> dict[str, str]:
        moment = self.settings.clock()
        date_time = bank_date_time(moment, self.settings.timezone)
        token = BankToken(
            bank_transaction_ref=new_bank_transaction_ref(),
            transaction_id=request["input_TransactionID"],
            msisdn=request["input_CustomerMSISDN"],
            amount=normalise_amount(request["input_Amount"]),
            currency=request["input_Currency"],
            account_number=request.get("input_AccountNumber"),
            bank_date_time=date_time,
        )
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
                reason="the mock's database stayed locked",
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
