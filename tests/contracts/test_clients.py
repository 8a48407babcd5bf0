"""The reference clients the contracts drive: what they send, and what they make of what comes back
(the contracts cover the envelope; these, what is outside it)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from mpesa_atm.clients import BankClient, IpgClient, PartnerError
from mpesa_atm.codes import ResponseCode
from tests.fixtures.mocks import DOCUMENT_REDEMPTION


def answering(status: int, body: object, seen: list[httpx.Request] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(body, Exception):
            raise body
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handler)


def ipg(transport: httpx.MockTransport, **options) -> IpgClient:
    return IpgClient(
        "http://ipg.test/base/",
        username="fnb",
        password="P@ssword123",
        shortcode="49272",
        transport=transport,
        **options,
    )


def redeem(client: IpgClient):
    return asyncio.run(
        client.redeem_token(
            msisdn="243843330333",
            amount="200",
            currency="CDF",
            third_party_reference="71c6d1f93910052de053",
            bank_transaction_ref="12345678123412341234123456789abc",
        )
    )


def test_redemption_posts_the_documents_body_and_parses_the_envelope():
    seen: list[httpx.Request] = []
    answer = {
        "output_ResponseCode": "-3",
        "output_ResponseDesc": "Duplicate",
        "output_InsightReference": "12sdxq3634dadsas242",
        "output_ThirdPartyReference": "71c6d1f93910052de053",
    }
    result = redeem(ipg(answering(200, answer, seen)))
    (request,) = seen
    assert str(request.url) == "http://ipg.test/base/token-redemption"
    assert json.loads(request.content) == DOCUMENT_REDEMPTION  # the document's example (2.1.2.2)
    assert (result.code, result.ok, result.insight_reference) == (
        ResponseCode.DUPLICATE,
        False,
        "12sdxq3634dadsas242",
    )
    assert result.exchange.request["input_Password"] == "********"


def test_a_code_outside_the_mapping_table_is_kept_but_not_mapped():
    result = redeem(ipg(answering(200, {"output_ResponseCode": "-42", "output_ResponseDesc": "?"})))
    assert result.response_code == "-42"
    assert result.code is None
    assert result.insight_reference == ""


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (502, b"<html>Bad Gateway</html>", "answered HTTP 502 outside the envelope"),
        (200, {"output_ResponseCode": 0}, "answered HTTP 200 outside the envelope"),
        (200, ["output_ResponseCode"], "answered HTTP 200 outside the envelope"),
    ],
)
def test_an_answer_outside_the_envelope_is_a_partner_error_with_the_exchange(status, body, message):
    with pytest.raises(PartnerError, match=message) as raised:
        redeem(ipg(answering(status, body)))
    assert raised.value.exchange.status == status
    assert raised.value.exchange.request["input_Password"] == "********"


def test_no_answer_within_the_timeout_is_a_partner_error():
    client = ipg(answering(200, httpx.ReadTimeout("slow")), timeout=0.5)
    with pytest.raises(PartnerError, match=r"did not answer within 0\.5 s") as raised:
        redeem(client)
    assert raised.value.exchange.status is None


def test_an_unreachable_partner_is_a_partner_error():
    with pytest.raises(PartnerError, match="could not be reached"):
        redeem(ipg(answering(200, httpx.ConnectError("refused"))))


def test_generation_leaves_out_the_account_number_when_there_is_none():
    seen: list[httpx.Request] = []
    answer = {
        "output_ResponseCode": "0",
        "output_ResponseDesc": "Success",
        "output_BankTransactionRef": "12345678123412341234123456789abc",
        "output_BankDateTime": "20190611 223210",
    }
    client = BankClient("http://bank.test", transport=answering(200, answer, seen))
    result = asyncio.run(
        client.generate_token(msisdn="243843330333", amount="200", currency="CDF", transaction_id="BVA12369A")
    )
    assert "input_AccountNumber" not in json.loads(seen[0].content)
    assert (result.ok, result.bank_transaction_ref, result.bank_date_time) == (
        True,
        "12345678123412341234123456789abc",
        "20190611 223210",
    )
