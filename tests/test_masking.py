"""One masking of the bank's password, for journals, logs, reports and reproducers."""

from __future__ import annotations

import json

import pytest

from mpesa_atm.masking import MASK, Secrets, masked, masked_body, masked_text
from mpesa_atm.passwords import hash_password
from mpesa_atm.settings import BankAccount


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


@pytest.mark.parametrize(
    "text",
    [
        '{"input_Passwort": "P@ss w/rd"}',  # a misspelt field
        "input_Passwort=P%40ss+w%2Frd&x=1",  # a form or a query string
        "P%40ss%20w%2frd",  # percent-encoding in lower case
        '{"x": "P\\u0040ss\\u0020w\\/rd"}',  # JSON escapes
        '"{\\"x\\": \\"P\\\\u0040ss w/rd\\"}"',  # a text that had escapes, escaped again
        "\\u0050\\u0040\\u0073\\u0073\\u0020\\u0077\\u002F\\u0072\\u0064",  # all escaped, upper-case hex
    ],
)
def test_a_known_password_is_masked_by_value_however_spelt(text):
    secrets = Secrets(lambda: ["P@ss w/rd"])
    assert secrets.masked(text).count(MASK) == 1, secrets.masked(text)


def test_a_password_too_short_to_mask_by_value_leaves_the_text_alone():
    assert Secrets(lambda: ["abc", "P@ssword123"]).masked("abc P@ssword123") == f"abc {MASK}"


def test_a_hashed_banks_password_is_masked_once_it_has_verified():
    account = BankAccount(username="b", password_hash=hash_password("S3cret!!"), shortcodes=("1",))
    secrets = Secrets.of_banks([account])
    assert secrets.masked("S3cret!!") == "S3cret!!"  # not known in clear yet
    assert account.password_matches("S3cret!!")
    assert secrets.masked("S3cret!!") == MASK
