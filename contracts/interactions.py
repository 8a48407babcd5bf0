"""Every interaction of the contracts, defined once: what the consumer sends, what it needs back,
the provider states it assumes, and the reference-client call that makes the request.

The bank is the consumer of the iPG (Token Redemption and Token Reversal); the iPG is the consumer
of the bank (Token Generation). Values are the document's samples; what the provider chooses
(references, date-times, descriptions) is matched by regex or type, never by value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pact import match

from mpesa_atm.clients import BankClient, IpgClient, IpgResult, TokenGenerationResult
from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.contracts.pacticipants import (
    A_TOKEN_EXISTS,
    A_TOKEN_WAS_GENERATED,
    BANK,
    IPG,
    NO_TOKEN_EXISTS,
    NO_TOKEN_WAS_GENERATED,
    THE_BANK_IS_REGISTERED,
    THE_REDEMPTION_WAS_MADE,
    THE_REVERSAL_WAS_MADE,
)
from mpesa_atm.spec import OPERATION_PATHS, load_spec

if TYPE_CHECKING:
    from pact import Pact

__all__ = ["INTERACTIONS", "SAMPLE", "Interaction", "Result"]

Result = IpgResult | TokenGenerationResult

# The document's sample values (2.1.2.1, 2.2.2.1, 3.1.2.1).
SAMPLE = {
    "username": "fnb",
    "password": "P@ssword123",
    "shortcode": "49272",
    "msisdn": "243843330333",
    "amount": "200",
    "currency": "CDF",
    "transaction_id": "BVA12369A",
    "account_number": "85000001222840",
    "bank_transaction_ref": "12345678123412341234123456789abc",
    "third_party_reference": "71c6d1f93910052de053",
    "insight_reference": "12sdxq3634dadsas242",
    "bank_date_time": "20190611 223210",
}
WRONG_PASSWORD = "not-the-password"
UNLINKED_SHORTCODE = "99999"
UNKNOWN_BANK_TRANSACTION_REF = "0" * 32

# The iPG chooses its references; the document only says "String" and shows 19 characters. The
# bank has to store and quote one, so: 1 to 32 printable ASCII characters, like the other references.
INSIGHT_REFERENCE = r"^[!-~]{1,32}$"

# The registered bank, as the iPG's states name it.
_BANK_ACCOUNT: dict[str, object] = {key: SAMPLE[key] for key in ("username", "password", "shortcode")}
# The token the bank redeems or reverses, as the iPG holds it.
_TOKEN: dict[str, object] = {
    key: SAMPLE[key]
    for key in ("username", "bank_transaction_ref", "transaction_id", "msisdn", "amount", "currency")
}
# The request already made, as the iPG's "was already made" states name it.
_MADE_REQUEST: dict[str, object] = {
    key: SAMPLE[key] for key in ("username", "bank_transaction_ref", "third_party_reference")
}
_GENERATION_REQUEST = {
    "input_AccountNumber": SAMPLE["account_number"],
    "input_CustomerMSISDN": SAMPLE["msisdn"],
    "input_Amount": SAMPLE["amount"],
    "input_Currency": SAMPLE["currency"],
    "input_TransactionID": SAMPLE["transaction_id"],
}
_REDEMPTION_REQUEST = {
    "input_Username": SAMPLE["username"],
    "input_Password": SAMPLE["password"],
    "input_CustomerMSISDN": SAMPLE["msisdn"],
    "input_Currency": SAMPLE["currency"],
    "input_BankShortcode": SAMPLE["shortcode"],
    "input_Amount": SAMPLE["amount"],
    "input_ThirdPartyReference": SAMPLE["third_party_reference"],
    "input_BankTransactionRef": SAMPLE["bank_transaction_ref"],
}
_REVERSAL_REQUEST = {**_REDEMPTION_REQUEST, "input_TransactionID": SAMPLE["transaction_id"]}

JSON = "application/json"
REDEMPTION_PATH = OPERATION_PATHS["token_redemption"]
REVERSAL_PATH = OPERATION_PATHS["token_reversal"]
GENERATION_PATH = OPERATION_PATHS["token_generation"]


@functools.cache
def _pattern(schema: str) -> str:
    """A pattern of openapi/common.yaml, so that the contracts and the OpenAPI documents agree."""
    pattern: str = load_spec("common.yaml")["components"]["schemas"][schema]["pattern"]
    return pattern


def _ipg_answer(code: ResponseCode) -> dict[str, Any]:
    """What the bank needs back from the iPG: the code; a reference and a description of the iPG's
    choosing; its own input_ThirdPartyReference echoed."""
    return {
        "output_ResponseCode": code.value,
        "output_ResponseDesc": match.str(DESCRIPTIONS[code]),
        "output_InsightReference": match.regex(SAMPLE["insight_reference"], regex=INSIGHT_REFERENCE),
        "output_ThirdPartyReference": SAMPLE["third_party_reference"],
    }


def _bank_answer(code: ResponseCode) -> dict[str, Any]:
    """What the iPG needs back from the bank: the code, a 32-character reference and the bank's
    date-time in the document's format."""
    return {
        "output_ResponseCode": code.value,
        "output_ResponseDesc": match.str(DESCRIPTIONS[code]),
        "output_BankTransactionRef": match.regex(
            SAMPLE["bank_transaction_ref"], regex=_pattern("OutputBankTransactionRef")
        ),
        "output_BankDateTime": match.regex(SAMPLE["bank_date_time"], regex=_pattern("BankDateTime")),
    }


# The consumers' side: the reference clients, as a bank and the iPG would call.
Call = Callable[[str], Coroutine[Any, Any, Result]]
CLIENT_TIMEOUT = 10.0


def _ipg_client(
    base_url: str, *, password: str = SAMPLE["password"], shortcode: str = SAMPLE["shortcode"]
) -> IpgClient:
    """The sample bank's client of the iPG."""
    return IpgClient(
        base_url,
        username=SAMPLE["username"],
        password=password,
        shortcode=shortcode,
        timeout=CLIENT_TIMEOUT,
    )


def _redeem(
    *, password: str = SAMPLE["password"], shortcode: str = SAMPLE["shortcode"], ref: str = ""
) -> Call:
    async def call(base_url: str) -> Result:
        client = _ipg_client(base_url, password=password, shortcode=shortcode)
        return await client.redeem_token(
            msisdn=SAMPLE["msisdn"],
            amount=SAMPLE["amount"],
            currency=SAMPLE["currency"],
            third_party_reference=SAMPLE["third_party_reference"],
            bank_transaction_ref=ref or SAMPLE["bank_transaction_ref"],
        )

    return call


def _reverse() -> Call:
    async def call(base_url: str) -> Result:
        client = _ipg_client(base_url)
        return await client.reverse_token(
            msisdn=SAMPLE["msisdn"],
            amount=SAMPLE["amount"],
            currency=SAMPLE["currency"],
            third_party_reference=SAMPLE["third_party_reference"],
            bank_transaction_ref=SAMPLE["bank_transaction_ref"],
            transaction_id=SAMPLE["transaction_id"],
        )

    return call


def _generate() -> Call:
    async def call(base_url: str) -> Result:
        client = BankClient(base_url, timeout=CLIENT_TIMEOUT)
        return await client.generate_token(
            msisdn=SAMPLE["msisdn"],
            amount=SAMPLE["amount"],
            currency=SAMPLE["currency"],
            transaction_id=SAMPLE["transaction_id"],
            account_number=SAMPLE["account_number"],
        )

    return call


@dataclass(frozen=True)
class Interaction:
    """One interaction: `define` adds it to a Pact; `call` makes its request with a reference client
    against a base URL; the consumer expects `expected_code` back."""

    name: str
    consumer: str
    provider: str
    define: Callable[[Pact], object]
    call: Call
    expected_code: ResponseCode


_registered: list[Interaction] = []


def _interaction(
    consumer: str, provider: str, call: Call, expected_code: ResponseCode
) -> Callable[[Callable[[Pact], object]], Callable[[Pact], object]]:
    def register(define: Callable[[Pact], object]) -> Callable[[Pact], object]:
        _registered.append(Interaction(define.__name__, consumer, provider, define, call, expected_code))
        return define

    return register


# The bank as consumer of the iPG.


@_interaction(BANK, IPG, _redeem(), ResponseCode.SUCCESS)
def redemption_of_a_known_token(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token redemption for a token the iPG holds")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(A_TOKEN_EXISTS, _TOKEN)
        .with_request("POST", REDEMPTION_PATH)
        .with_body(_REDEMPTION_REQUEST, content_type=JSON)
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.SUCCESS), content_type=JSON)
    )


@_interaction(BANK, IPG, _redeem(), ResponseCode.DUPLICATE)
def repeated_redemption(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token redemption that repeats one already made")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(A_TOKEN_EXISTS, _TOKEN)
        .given(THE_REDEMPTION_WAS_MADE, _MADE_REQUEST)
        .with_request("POST", REDEMPTION_PATH)
        .with_body(_REDEMPTION_REQUEST, content_type=JSON)
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.DUPLICATE), content_type=JSON)
    )


@_interaction(BANK, IPG, _redeem(password=WRONG_PASSWORD), ResponseCode.AUTHENTICATION_FAILED)
def redemption_with_a_wrong_password(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token redemption with a wrong password")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(A_TOKEN_EXISTS, _TOKEN)
        .with_request("POST", REDEMPTION_PATH)
        .with_body({**_REDEMPTION_REQUEST, "input_Password": WRONG_PASSWORD}, content_type=JSON)
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.AUTHENTICATION_FAILED), content_type=JSON)
    )


@_interaction(BANK, IPG, _redeem(shortcode=UNLINKED_SHORTCODE), ResponseCode.BANK_DETAILS_INVALID)
def redemption_from_an_unlinked_shortcode(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token redemption from a shortcode not linked to the bank")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(A_TOKEN_EXISTS, _TOKEN)
        .with_request("POST", REDEMPTION_PATH)
        .with_body({**_REDEMPTION_REQUEST, "input_BankShortcode": UNLINKED_SHORTCODE}, content_type=JSON)
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.BANK_DETAILS_INVALID), content_type=JSON)
    )


@_interaction(
    BANK, IPG, _redeem(ref=UNKNOWN_BANK_TRANSACTION_REF), ResponseCode.TRANSACTION_DETAILS_NOT_FOUND
)
def redemption_of_an_unknown_token(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token redemption for a token the iPG does not hold")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(
            NO_TOKEN_EXISTS,
            username=SAMPLE["username"],
            bank_transaction_ref=UNKNOWN_BANK_TRANSACTION_REF,
        )
        .with_request("POST", REDEMPTION_PATH)
        .with_body(
            {**_REDEMPTION_REQUEST, "input_BankTransactionRef": UNKNOWN_BANK_TRANSACTION_REF},
            content_type=JSON,
        )
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.TRANSACTION_DETAILS_NOT_FOUND), content_type=JSON)
    )


@_interaction(BANK, IPG, _reverse(), ResponseCode.SUCCESS)
def reversal_of_a_known_token(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token reversal for a token the iPG holds")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(A_TOKEN_EXISTS, _TOKEN)
        .with_request("POST", REVERSAL_PATH)
        .with_body(_REVERSAL_REQUEST, content_type=JSON)
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.SUCCESS), content_type=JSON)
    )


@_interaction(BANK, IPG, _reverse(), ResponseCode.DUPLICATE)
def repeated_reversal(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token reversal that repeats one already made")
        .given(THE_BANK_IS_REGISTERED, _BANK_ACCOUNT)
        .given(A_TOKEN_EXISTS, _TOKEN)
        .given(THE_REVERSAL_WAS_MADE, _MADE_REQUEST)
        .with_request("POST", REVERSAL_PATH)
        .with_body(_REVERSAL_REQUEST, content_type=JSON)
        .will_respond_with(200)
        .with_body(_ipg_answer(ResponseCode.DUPLICATE), content_type=JSON)
    )


# The iPG as consumer of the bank.


@_interaction(IPG, BANK, _generate(), ResponseCode.SUCCESS)
def generation_for_a_new_transaction(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token generation for a new transaction")
        .given(NO_TOKEN_WAS_GENERATED, transaction_id=SAMPLE["transaction_id"])
        .with_request("POST", GENERATION_PATH)
        .with_body(_GENERATION_REQUEST, content_type=JSON)
        .will_respond_with(200)
        .with_body(_bank_answer(ResponseCode.SUCCESS), content_type=JSON)
    )


@_interaction(IPG, BANK, _generate(), ResponseCode.DUPLICATE)
def repeated_generation(pact: Pact) -> object:
    return (
        pact.upon_receiving("a token generation that repeats one already made")
        .given(
            A_TOKEN_WAS_GENERATED,
            transaction_id=SAMPLE["transaction_id"],
            msisdn=SAMPLE["msisdn"],
            amount=SAMPLE["amount"],
            currency=SAMPLE["currency"],
            account_number=SAMPLE["account_number"],
        )
        .with_request("POST", GENERATION_PATH)
        .with_body(_GENERATION_REQUEST, content_type=JSON)
        .will_respond_with(200)
        .with_body(_bank_answer(ResponseCode.DUPLICATE), content_type=JSON)
    )


INTERACTIONS: tuple[Interaction, ...] = tuple(_registered)
