"""Settings: the config file, MPESA_ATM_* variables and flags, in that order of strength."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from mpesa_atm.errors import ConfigError
from mpesa_atm.passwords import hash_password, verify_password
from mpesa_atm.settings import DOCUMENT_BANK, Settings, environment_variables, load_settings
from mpesa_atm.settings_table import table_of

CONFIG = """
db = "from-file.sqlite3"
journal_limit = 50
token_ttl_hours = 24
timezone = "Africa/Kinshasa"

[ipg]
bank_url = "http://bank.example:9000"

[[ipg.banks]]
username = "equity"
password_hash = "{hash}"
shortcodes = ["60001", "60002"]
url = "http://equity.example"

[bank]
ipg_url = "http://ipg.example"
username = "equity"
password = "S3cret!"
shortcode = "60001"

[paths]
token-generation = "/atm/token"
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "mocks.toml"
    path.write_text(CONFIG.replace("{hash}", hash_password("S3cret!")))
    return path


def test_defaults_hold_the_document_bank():
    settings = load_settings(env={})
    assert settings.banks == (DOCUMENT_BANK,)
    assert settings.token_ttl == timedelta(days=2)
    assert settings.max_body_bytes == 65536


def test_config_file_sets_every_section(config_file):
    settings = load_settings(config_file=config_file, env={})
    assert settings.db_path == "from-file.sqlite3"
    assert settings.journal_limit == 50
    assert settings.token_ttl == timedelta(hours=24)
    assert settings.timezone == "Africa/Kinshasa"
    assert settings.bank_url == "http://bank.example:9000"
    (bank,) = settings.banks
    assert (bank.username, bank.shortcodes, bank.url) == (
        "equity",
        ("60001", "60002"),
        "http://equity.example",
    )
    assert bank.password_matches("S3cret!") and not bank.password_matches("s3cret!")
    assert (settings.ipg_url, settings.bank_username, settings.bank_shortcode) == (
        "http://ipg.example",
        "equity",
        "60001",
    )
    assert settings.paths["token_generation"] == "/atm/token"
    assert settings.paths["token_redemption"] == "/token-redemption"


def test_environment_beats_the_file_and_flags_beat_the_environment(config_file):
    env = {"MPESA_ATM_DB": "from-env.sqlite3", "MPESA_ATM_JOURNAL_LIMIT": "7"}
    assert load_settings(config_file=config_file, env=env).db_path == "from-env.sqlite3"
    assert load_settings(config_file=config_file, env=env).journal_limit == 7
    assert load_settings(config_file=config_file, env=env, db_path="flag.sqlite3").db_path == "flag.sqlite3"


def test_config_file_may_come_from_the_environment(config_file):
    assert load_settings(env={"MPESA_ATM_CONFIG": str(config_file)}).db_path == "from-file.sqlite3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dbb = 'x'", "unknown key(s) dbb"),
        ("journal_limit = 'ten'", "journal_limit must be a int"),
        ("[ipg]\nbanks = []", "configure at least one bank"),
        ("[[ipg.banks]]\nusername = 'a'\nshortcodes = ['1234']", "exactly one of password, password_hash"),
        ("[[ipg.banks]]\nusername = 'a'\npassword = 'p'\nshortcodes = []", "at least one shortcode"),
        ("[[ipg.banks]]\nusername = 'a'\npassword_hash = 'plain'\nshortcodes = ['1']", "not a hash"),
        ("timezone = 'Mars/Olympus'", "not an IANA time zone"),
        ("[paths]\ntoken-burning = '/x'", "unknown operation"),
        ("not toml", "not valid TOML"),
        # past timedelta's range: one line, not an OverflowError's traceback
        ("retention_days = 1e10", "retention_days must be a number of days more than 0 and under 1000000"),
        ("token_ttl_hours = -1", "token_ttl_hours must be a number of hours more than 0"),
        ("token_ttl_hours = 1e300", "token_ttl_hours must be a number of hours more than 0"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(config_file=path, env={})


def test_environment_numbers_are_cast_strictly():
    with pytest.raises(ConfigError, match="MPESA_ATM_MAX_BODY_BYTES must be a whole number"):
        load_settings(env={"MPESA_ATM_MAX_BODY_BYTES": "64k"})
    with pytest.raises(ConfigError, match="MPESA_ATM_RETENTION_DAYS must be a number of days more than 0"):
        load_settings(env={"MPESA_ATM_RETENTION_DAYS": "1e10"})


def test_password_hash_round_trip_and_constant_time_compare():
    hashed = hash_password("P@ssword123")
    assert hashed.startswith("scrypt$")
    assert verify_password(hashed, "P@ssword123")
    assert not verify_password(hashed, "P@ssword124")
    assert hash_password("P@ssword123") != hashed  # salted


def test_settings_replace_keeps_values_that_are_not_set():
    settings = Settings(journal_limit=3)
    assert settings.replace(journal_limit=None, db_path="x").journal_limit == 3


def test_hashed_password_is_checked_once_per_candidate_right_or_wrong(monkeypatch):
    import mpesa_atm.settings as settings_module
    from mpesa_atm.settings import BankAccount

    account = BankAccount(username="fnb", password_hash=hash_password("P@ssword123"), shortcodes=("49272",))
    calls = []

    def counting(stored, candidate):
        calls.append(candidate)
        return verify_password(stored, candidate)

    monkeypatch.setattr(settings_module, "verify_password", counting)
    assert [account.password_matches(p) for p in ["wrong", "wrong", "P@ssword123", "P@ssword123"]] == [
        False,
        False,
        True,
        True,
    ]
    assert calls == ["wrong", "P@ssword123"]


def test_the_timeouts_are_settings_from_file_and_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("busy_timeout = 2\nhang_seconds = 0.5\nclient_timeout = 3\n")
    settings = load_settings(
        config_file=config, env={"MPESA_ATM_BODY_TIMEOUT": "1.5", "MPESA_ATM_BUSY_TIMEOUT": "4"}
    )
    assert (settings.busy_timeout, settings.hang_seconds, settings.client_timeout) == (4.0, 0.5, 3.0)
    assert settings.body_timeout == 1.5


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(ConfigError, match=r"HANG_SECONDS|hang_seconds"):
        load_settings(env={"MPESA_ATM_HANG_SECONDS": value})


def test_the_bank_credentials_come_from_the_environment():
    settings = load_settings(
        env={"MPESA_ATM_USERNAME": "acme", "MPESA_ATM_PASSWORD": "pw", "MPESA_ATM_SHORTCODE": "123"}
    )
    assert (settings.bank_username, settings.bank_password, settings.bank_shortcode) == ("acme", "pw", "123")


def test_replace_keeps_what_is_none_and_clears_what_it_is_told():
    settings = Settings(control_token="secret", max_concurrency=3)
    assert settings.replace(control_token=None).control_token == "secret"
    cleared = settings.replace(clear=("control_token", "max_concurrency"))
    assert (cleared.control_token, cleared.max_concurrency) == (None, None)
    with pytest.raises(ValueError, match="db_path cannot be cleared"):
        settings.replace(clear=("db_path",))


def test_every_variable_the_settings_read_is_documented_and_no_other():
    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert set(re.findall(r"MPESA_ATM_[A-Z_]+", page)) == set(environment_variables())


def test_every_key_of_the_config_file_is_documented_and_no_other():
    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    (sample,) = re.findall(r"```toml\n(.*?)```", page, flags=re.DOTALL)
    documented, section = set(), ""
    for line in sample.splitlines():
        table = re.match(r"\[\[?([a-z.]+)\]\]?", line)
        if table:  # [[ipg.banks]] and [paths] are settings; their keys are a bank's and the operations'
            section = table.group(1)
            if section in ("ipg.banks", "paths"):
                documented.add(section)
            continue
        key = re.match(r"#? ?([a-z_]+) = ", line)
        if key and section not in ("ipg.banks", "paths"):
            documented.add(f"{section}.{key.group(1)}" if section else key.group(1))
    declared = {how.file for how in table_of(Settings).values() if how.file is not None}
    assert documented == declared
