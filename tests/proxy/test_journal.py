"""The proxy's journal records: kept from the bodies the proxy parsed to judge them, they are the
records the raw bytes give, passwords masked alike."""

from __future__ import annotations

import json

import pytest

from mpesa_atm.masking import Secrets
from mpesa_atm.proxy.answers import parsed
from mpesa_atm.proxy.journal import record_of

PASSWORD = "s3cret-Pa55"
_SECRETS = Secrets(lambda: [PASSWORD])

BODIES = [
    b'{"input_Password":"' + PASSWORD.encode() + b'","input_Amount":"200"}',
    b'{"outer":{"input_Password":"x1y2z3","list":[{"input_Password":"abc"}]}}',
    b'{"input_Pasword":"' + PASSWORD.encode() + b'"}',  # misspelt: masked by value
    b'{"input_Amount":"\\u0073' + PASSWORD[1:].encode() + b'"}',  # the password, its first letter escaped
    b'{"n": 123456789012345678901234567890}',  # past 64 bits: orjson reads a float
    b'{"n": 12.50, "m": [1e3, -0.0]}',
    b'{"n": NaN}',  # json reads it, orjson does not
    b'["input_Password", "' + PASSWORD.encode() + b'"]',  # JSON, not an object
    b"input_Password=" + PASSWORD.encode() + b"&x=1",  # no JSON at all
    b'{"output_ResponseCode":"0","output_ResponseDesc":"Success","\xc3\xa9":"\xe2\x82\xac"}',
    b"",
]


def _record(request: bytes, answer: bytes, *, objects: bool) -> object:
    return record_of(
        "ipg",
        exchange_id="e1",
        operation_id="token_redemption",
        url=f"http://upstream/token-redemption?p={PASSWORD}",
        request=request,
        status=200,
        upstream_status=200,
        answer=answer,
        findings=(),
        milliseconds=1.5,
        secrets=_SECRETS,
        request_object=parsed(request) if objects else None,
        answer_object=parsed(answer) if objects else None,
    )


@pytest.mark.parametrize("body", BODIES)
def test_a_record_kept_from_the_parsed_bodies_is_the_record_of_the_raw_ones(body: bytes) -> None:
    answer = BODIES[0] if body != BODIES[0] else BODIES[-2]
    from_objects = _record(body, answer, objects=True)
    assert from_objects == _record(body, answer, objects=False)
    assert PASSWORD not in str(from_objects)
    kept = json.loads(from_objects.response)  # type: ignore[attr-defined]
    assert kept["exchange_id"] == "e1"


def test_masked_all_masks_each_text_as_masked_does() -> None:
    texts = (f"a {PASSWORD} b", "nothing here", "%73" + PASSWORD[1:], "x\\u0073" + PASSWORD[1:], "")
    assert _SECRETS.masked_all(*texts) == tuple(_SECRETS.masked(text) for text in texts)
    assert _SECRETS.masked_all() == ()
