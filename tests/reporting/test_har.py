"""The HAR log: HAR 1.2's required keys, and no password or bearer token in it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from mpesa_atm.reporting import Exchange, har_document, write_har
from tests.reporting.har import assert_har_1_2

STARTED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def _exchange(body: bytes, **changes: object) -> Exchange:
    fields: dict[str, object] = {
        "started": STARTED,
        "elapsed": 0.0125,
        "method": "POST",
        "url": "http://ipg.test/token-redemption?trace=1",
        "request_headers": (("Content-Type", "application/json"), ("Authorization", "Bearer s3cret")),
        "request_body": body,
        "status": 200,
        "reason": "OK",
        "response_headers": (("content-type", "application/json"),),
        "response_body": b'{"output_ResponseCode": "0"}',
        "label": "POST /token-redemption",
    }
    fields.update(changes)
    return Exchange(**fields)  # type: ignore[arg-type]


def test_a_recording_has_every_key_har_1_2_requires_and_times_in_milliseconds(tmp_path):
    path = tmp_path / "run.har"
    write_har(path, [_exchange(b'{"input_Amount": "200"}')], comment="a test")

    document = json.loads(path.read_text())
    assert_har_1_2(document)
    entry = document["log"]["entries"][0]
    assert entry["time"] == 12.5
    assert entry["startedDateTime"] == "2026-01-02T03:04:05.678+00:00"
    assert entry["request"]["queryString"] == [{"name": "trace", "value": "1"}]
    assert entry["request"]["postData"] == {"mimeType": "application/json", "text": '{"input_Amount": "200"}'}
    assert entry["comment"] == "POST /token-redemption"


def test_passwords_and_bearer_tokens_are_masked_however_the_body_is_written():
    exchanges = [
        _exchange(b'{"input_Username": "fnb", "input_Password": "P@ssword123"}'),
        _exchange(b'{"input_Password": "P@ssword123", "broken'),  # not JSON
        _exchange(b"{}", response_body=b'{"echo": {"input_Password": "P@ssword123"}}'),
    ]

    text = json.dumps(har_document(exchanges))

    assert "P@ssword123" not in text and "s3cret" not in text
    assert text.count("********") >= 6  # three bodies, three Authorization headers


def test_a_request_that_got_no_answer_is_an_entry_with_status_0_and_its_error():
    document = har_document([_exchange(b"{}", status=None, reason="connection reset by peer")])

    assert_har_1_2(document)
    entry = document["log"]["entries"][0]
    assert entry["response"]["status"] == 0
    assert entry["_error"] == "connection reset by peer"
