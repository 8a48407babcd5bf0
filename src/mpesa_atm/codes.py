"""The response codes of the document's mapping table and the envelopes every answer is built from.

Every answer the mocks send, business outcome or error, is made here, so the wire format has one home.
"""

from __future__ import annotations

import enum

__all__ = [
    "DESCRIPTIONS",
    "GIVES_A_TOKEN",
    "MAPPED_CODES",
    "ResponseCode",
    "bank_answer",
    "describe",
    "ipg_answer",
]


class ResponseCode(enum.StrEnum):
    """Section 4, Response Code Mapping."""

    SUCCESS = "0"
    FAILURE = "-1"
    G2_ERROR = "-2"
    DUPLICATE = "-3"
    AUTHENTICATION_FAILED = "-4"
    BANK_DETAILS_INVALID = "-5"
    REQUEST_TIME_OUT = "-6"
    SYSTEM_TOO_BUSY = "-7"
    API_OFFLINE = "-8"
    TRANSACTION_DETAILS_NOT_FOUND = "-9"


DESCRIPTIONS: dict[ResponseCode, str] = {
    ResponseCode.SUCCESS: "Success",
    ResponseCode.FAILURE: "Failure",
    ResponseCode.G2_ERROR: "G2 Error",
    ResponseCode.DUPLICATE: "Duplicate",
    ResponseCode.AUTHENTICATION_FAILED: "Authentication Failed",
    ResponseCode.BANK_DETAILS_INVALID: "Bank Details Invalid",
    ResponseCode.REQUEST_TIME_OUT: "Request Time Out",
    ResponseCode.SYSTEM_TOO_BUSY: "System Too Busy",
    ResponseCode.API_OFFLINE: "API Offline",
    ResponseCode.TRANSACTION_DETAILS_NOT_FOUND: "Transaction Details Not Found",
}


# The values of output_ResponseCode the mapping table knows.
MAPPED_CODES: frozenset[str] = frozenset(code.value for code in ResponseCode)
# The answers that give a token, or the first answer's again: their references are the document's, not
# a refusal's (docs/spec-notes.md row 23).
GIVES_A_TOKEN: frozenset[str] = frozenset({ResponseCode.SUCCESS.value, ResponseCode.DUPLICATE.value})


def describe(code: ResponseCode, reason: str | None = None) -> str:
    """The output_ResponseDesc for a code: the table's description, then the reason if any."""
    text = DESCRIPTIONS[code]
    return f"{text}: {reason}" if reason else text


def ipg_answer(
    code: ResponseCode,
    *,
    insight_reference: str,
    third_party_reference: str,
    reason: str | None = None,
) -> dict[str, str]:
    """The envelope of Token Redemption and Token Reversal (2.1.3.1, 2.2.3.1)."""
    return {
        "output_ResponseCode": code.value,
        "output_ResponseDesc": describe(code, reason),
        "output_InsightReference": insight_reference,
        "output_ThirdPartyReference": third_party_reference,
    }


def bank_answer(
    code: ResponseCode,
    *,
    bank_transaction_ref: str,
    bank_date_time: str,
    reason: str | None = None,
) -> dict[str, str]:
    """The envelope of Token Generation (3.1.3.1)."""
    return {
        "output_ResponseCode": code.value,
        "output_ResponseDesc": describe(code, reason),
        "output_BankTransactionRef": bank_transaction_ref,
        "output_BankDateTime": bank_date_time,
    }
