"""Reference clients of the API: what the iPG sends to a bank, and what a bank sends to the iPG.

Each call posts the document's JSON body, with a time-out, and parses the envelope into a result;
a partner that cannot be reached, or that answers outside the envelope, raises PartnerError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from mpesa_atm.codes import ResponseCode
from mpesa_atm.errors import PartnerError
from mpesa_atm.masking import masked
from mpesa_atm.settings import Settings
from mpesa_atm.spec import OPERATION_PATHS

__all__ = [
    "BankClient",
    "Exchange",
    "IpgClient",
    "IpgResult",
    "PartnerError",
    "TokenGenerationResult",
]


@dataclass(frozen=True)
class Exchange:
    """One call as it went over the wire (password masked): what the journal records."""

    url: str
    request: dict[str, Any]
    status: int | None
    response: Any
    duration_ms: float


@dataclass(frozen=True)
class _Result:
    http_status: int
    response_code: str
    description: str
    body: dict[str, Any]
    exchange: Exchange = field(repr=False)

    @property
    def code(self) -> ResponseCode | None:
        """The mapped code, or None when the partner sent a code outside the mapping table."""
        try:
            return ResponseCode(self.response_code)
        except ValueError:
            return None

    @property
    def ok(self) -> bool:
        return self.response_code == ResponseCode.SUCCESS


@dataclass(frozen=True)
class TokenGenerationResult(_Result):
    bank_transaction_ref: str = ""
    bank_date_time: str = ""


@dataclass(frozen=True)
class IpgResult(_Result):
    insight_reference: str = ""
    third_party_reference: str = ""


async def _post(
    url: str, body: dict[str, Any], *, timeout: float, transport: httpx.AsyncBaseTransport | None
) -> tuple[int, dict[str, Any], Exchange]:
    started = time.perf_counter()

    def exchange(status: int | None, response: Any) -> Exchange:
        elapsed = (time.perf_counter() - started) * 1000
        return Exchange(url, masked(body), status, response, round(elapsed, 3))

    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
            response = await client.post(url, json=body)
    except httpx.TimeoutException as exc:
        raise PartnerError(f"{url} did not answer within {timeout:g} s", exchange(None, None)) from exc
    except httpx.HTTPError as exc:
        raise PartnerError(f"{url} could not be reached: {exc}", exchange(None, None)) from exc
    try:
        parsed = response.json()
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("output_ResponseCode"), str):
        raise PartnerError(
            f"{url} answered HTTP {response.status_code} outside the envelope: {response.text[:200]!r}",
            exchange(response.status_code, response.text[:2000]),
        )
    return response.status_code, parsed, exchange(response.status_code, parsed)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""


class BankClient:
    """Calls a bank's Token Generation, as the iPG does when a customer asks for a token."""

    def __init__(
        self,
        base_url: str,
        *,
        path: str = OPERATION_PATHS["token_generation"],
        timeout: float = Settings.outbound_timeout,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + path
        self.timeout = timeout
        self._transport = transport

    async def generate_token(
        self,
        *,
        msisdn: str,
        amount: str,
        currency: str,
        transaction_id: str,
        account_number: str | None = None,
    ) -> TokenGenerationResult:
        body = {
            "input_CustomerMSISDN": msisdn,
            "input_Amount": amount,
            "input_Currency": currency,
            "input_TransactionID": transaction_id,
        }
        if account_number is not None:
            body = {"input_AccountNumber": account_number, **body}
        status, answer, exchange = await _post(
            self.url, body, timeout=self.timeout, transport=self._transport
        )
        return TokenGenerationResult(
            http_status=status,
            response_code=answer["output_ResponseCode"],
            description=_text(answer, "output_ResponseDesc"),
            body=answer,
            exchange=exchange,
            bank_transaction_ref=_text(answer, "output_BankTransactionRef"),
            bank_date_time=_text(answer, "output_BankDateTime"),
        )


class IpgClient:
    """Calls the iPG's Token Redemption and Token Reversal with a bank's credentials."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str,
        password: str,
        shortcode: str,
        redemption_path: str = OPERATION_PATHS["token_redemption"],
        reversal_path: str = OPERATION_PATHS["token_reversal"],
        timeout: float = Settings.outbound_timeout,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        self.redemption_url = base + redemption_path
        self.reversal_url = base + reversal_path
        self.timeout = timeout
        self._credentials = {
            "input_Username": username,
            "input_Password": password,
        }
        self._shortcode = shortcode
        self._transport = transport

    def _body(
        self,
        *,
        msisdn: str,
        amount: str,
        currency: str,
        third_party_reference: str,
        bank_transaction_ref: str,
    ) -> dict[str, str]:
        return {
            **self._credentials,
            "input_CustomerMSISDN": msisdn,
            "input_Currency": currency,
            "input_BankShortcode": self._shortcode,
            "input_Amount": amount,
            "input_ThirdPartyReference": third_party_reference,
            "input_BankTransactionRef": bank_transaction_ref,
        }

    async def _call(self, url: str, body: dict[str, str]) -> IpgResult:
        status, answer, exchange = await _post(url, body, timeout=self.timeout, transport=self._transport)
        return IpgResult(
            http_status=status,
            response_code=answer["output_ResponseCode"],
            description=_text(answer, "output_ResponseDesc"),
            body=answer,
            exchange=exchange,
            insight_reference=_text(answer, "output_InsightReference"),
            third_party_reference=_text(answer, "output_ThirdPartyReference"),
        )

    async def redeem_token(
        self,
        *,
        msisdn: str,
        amount: str,
        currency: str,
        third_party_reference: str,
        bank_transaction_ref: str,
    ) -> IpgResult:
        body = self._body(
            msisdn=msisdn,
            amount=amount,
            currency=currency,
            third_party_reference=third_party_reference,
            bank_transaction_ref=bank_transaction_ref,
        )
        return await self._call(self.redemption_url, body)

    async def reverse_token(
        self,
        *,
        msisdn: str,
        amount: str,
        currency: str,
        third_party_reference: str,
        bank_transaction_ref: str,
        transaction_id: str,
    ) -> IpgResult:
        body = self._body(
            msisdn=msisdn,
            amount=amount,
            currency=currency,
            third_party_reference=third_party_reference,
            bank_transaction_ref=bank_transaction_ref,
        )
        body["input_TransactionID"] = transaction_id
        return await self._call(self.reversal_url, body)
