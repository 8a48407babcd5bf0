"""One masking of the bank's password, for journals, logs, reports and reproducers."""

from __future__ import annotations

import json

from mpesa_atm.masking import MASK, masked, masked_body, masked_text


def test_a_password_is_masked_however_deep_it_is_nested():
    body = {"input_Password": "P@ss", "x": [{"input_Password": "P@ss", "y": 1}], "input_Username": "fnb"}
    assert masked(body) == {
        "input_Password": MASK,
        "x": [{"input_Password": MASK, "y": 1}],
        "input_Username": "fnb",
    }
    assert body["input_Password"] == "P@ss"  # a copy: the original is left alone


def test_only_masks_the_secret_and_leaves_a_deliberately_wrong_password():
    assert masked({"input_Password": "wrong"}, mask="$P", only="right") == {"input_Password": "wrong"}
    assert masked({"input_Password": "right"}, mask="$P", only="right") == {"input_Password": "$P"}


def test_text_that_is_not_json_has_the_value_after_the_key_masked():
    assert masked_text("input_Password=P@ss&x=1") == f"input_Password={MASK}&x=1"
    assert masked_text('{"input_Password": "P@ss", "broken') == f'{{"input_Password": {MASK}, "broken'


def test_a_body_is_parsed_and_masked_or_kept_as_masked_text():
    assert masked_body(json.dumps({"input_Password": "P@ss"}).encode()) == {"input_Password": MASK}
    assert "P@ss" not in masked_body(b'{"input_Password": "P@ss" oops')
    assert masked_body(b"x" * 10_000, limit=10) == "x" * 10
