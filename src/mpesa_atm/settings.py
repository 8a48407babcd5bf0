"""Every setting of the mocks with its default, and how a config file and MPESA_ATM_* variables set them.

Precedence: an explicit flag > an MPESA_ATM_* environment variable > the config file > the default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mpesa_atm.errors import ConfigError
from mpesa_atm.passwords import is_password_hash, verify_password
from mpesa_atm.reachable import url_problem
from mpesa_atm.spec import OPERATION_PATHS

__all__ = [
    "DOCUMENT_BANK",
    "ENV_PREFIX",
    "BankAccount",
    "Settings",
    "database_label",
    "environment_variables",
    "is_database_url",
    "load_settings",
    "utc_now",
]

ENV_PREFIX = "MPESA_ATM_"
_CHECKED_LIMIT = 1024  # passwords remembered per hashed bank


def utc_now() -> datetime:
    return datetime.now(UTC)


_DATABASE_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(db: str) -> bool:
    """Whether the `db` setting names a PostgreSQL database (a URL) rather than a SQLite file."""
    return db.startswith(_DATABASE_SCHEMES)


def database_label(db: str) -> str:
    """`db` as it may be shown: a URL without its password (postgresql://user:***@host/name)."""
    if not is_database_url(db):
        return db
    scheme, rest = db.split("://", 1)
    credentials, at, place = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{place}"


@dataclass(frozen=True)
class BankAccount:
    """A bank as the iPG knows it: the credentials it was given and the shortcodes linked to them."""

    username: str
    shortcodes: tuple[str, ...]
    password: str | None = None
    password_hash: str | None = None
    url: str | None = None  # base URL of this bank's Token Generation API; None: Settings.bank_url
    # sha256 digests of passwords checked against password_hash, and the outcome: scrypt is slow by
    # design (tens of ms on the event loop), and clients repeat the same password, right or wrong.
    _checked: dict[bytes, bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.password is None) == (self.password_hash is None):
            raise ConfigError(f"bank {self.username!r}: give exactly one of password, password_hash")
        if self.password_hash is not None and not is_password_hash(self.password_hash):
            raise ConfigError(
                f"bank {self.username!r}: password_hash is not a hash from 'mpesa-atm hash-password'"
            )
        if not self.shortcodes:
            raise ConfigError(f"bank {self.username!r}: link at least one shortcode")

    def password_matches(self, candidate: str) -> bool:
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), candidate.encode())
        assert self.password_hash is not None
        key = hashlib.sha256(candidate.encode()).digest()
        if key not in self._checked:
            if len(self._checked) >= _CHECKED_LIMIT:  # bounded: forget the oldest
                del self._checked[next(iter(self._checked))]
            self._checked[key] = verify_password(self.password_hash, candidate)
        return self._checked[key]


# The sample bank of the document (2.1.2.1), so the document's examples work out of the box.
DOCUMENT_BANK = BankAccount(username="fnb", password="P@ssword123", shortcodes=("49272",))


@dataclass(frozen=True)
class Settings:
    """Everything a mock needs. Public signatures take None for "not set"; the defaults live here."""

    db_path: str = "mpesa-atm.sqlite3"
    # iPG mock: the banks it knows, and where it calls Token Generation by default.
    banks: tuple[BankAccount, ...] = (DOCUMENT_BANK,)
    bank_url: str = "http://127.0.0.1:8002"
    # Bank mock: the iPG it calls, and the credentials it calls with.
    ipg_url: str = "http://127.0.0.1:8001"
    bank_username: str = "fnb"
    bank_password: str = "P@ssword123"
    bank_shortcode: str = "49272"
    timezone: str = "UTC"  # of output_BankDateTime
    # Both: operation paths, limits, control API.
    paths: Mapping[str, str] = field(default_factory=lambda: dict(OPERATION_PATHS))
    token_ttl: timedelta = timedelta(days=2)
    # Tokens and transactions older than this are removed (mocks/retention.py); never inside token_ttl.
    retention: timedelta = timedelta(days=7)
    max_body_bytes: int = 64 * 1024
    journal_limit: int = 10_000
    outbound_timeout: float = 10.0  # the mock's own calls to the other side (its drivers)
    client_timeout: float = 10.0  # fuzz and verify: seconds to wait for a partner's answer
    body_timeout: float = 10.0  # a request body that has not arrived by then is answered 408
    busy_timeout: float = 5.0  # a write waits this long for another process's lock, then -7
    hang_seconds: float = 30.0  # a "hang" fault holds the answer this long, then answers -1
    control_token: str | None = None
    # Fault modes at start-up (the control API's /_harness/modes changes them at run time).
    magic_values: bool = True
    offline: bool = False
    max_concurrency: int | None = None
    access_log: bool = False  # serve: one line per call on stdout
    # serve over HTTPS: the certificate (PEM, its key in it unless tls_key), and with tls_client_ca
    # a client certificate signed by one of those CAs is required (mutual TLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # The API's calls through connexion, each answer checked against the document (debugging; slower)
    validate_responses: bool = False
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"timezone {self.timezone!r} is not an IANA time zone") from exc
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if self.journal_limit < 1:
            raise ConfigError("journal_limit must be at least 1")
        for name in _SECONDS:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be more than 0 seconds, not {getattr(self, name)!r}")
        if self.retention < self.token_ttl:
            raise ConfigError(
                f"retention_days ({self.retention.total_seconds() / 86400:g}) must be at least the token"
                f" window, token_ttl_hours ({self.token_ttl.total_seconds() / 3600:g} h ="
                f" {self.token_ttl.total_seconds() / 86400:g} days)"
            )
        unknown = set(self.paths) - set(OPERATION_PATHS)
        if unknown:
            raise ConfigError(f"paths: unknown operation(s) {sorted(unknown)}")
        for operation, path in self.paths.items():
            if not path.startswith("/") or any(c.isspace() or c in "?#" for c in path):
                raise ConfigError(
                    f"paths.{operation.replace('_', '-')}: {path!r} is not a path starting with /"
                )
        if len(set(self.paths.values())) < len(self.paths):
            raise ConfigError("paths: two operations at the same path")
        if self.tls_cert is None and (self.tls_key is not None or self.tls_client_ca is not None):
            raise ConfigError("tls_key and tls_client_ca need tls_cert: the mock's own certificate")
        _check_url("bank_url", self.bank_url)
        _check_url("ipg_url", self.ipg_url)
        for account in self.banks:
            if account.url is not None:
                _check_url(f"bank {account.username!r}: url", account.url)
        for name in {b.username for b in self.banks}:
            if sum(b.username == name for b in self.banks) > 1:
                raise ConfigError(f"bank {name!r} is configured twice")

    def bank(self, username: str) -> BankAccount | None:
        return next((b for b in self.banks if b.username == username), None)

    def replace(self, *, clear: Iterable[str] = (), **changes: Any) -> Settings:
        """A copy with the given fields changed. None means "not set" and keeps the current value;
        the fields named in `clear` become None (`clear=("control_token",)`)."""
        kept = {k: v for k, v in changes.items() if v is not None}
        for name in clear:
            if name not in _OPTIONAL:
                raise ValueError(f"{name} cannot be cleared: it has no 'not set' value")
            kept[name] = None
        return dataclasses.replace(self, **kept)


def _check_url(what: str, url: str) -> None:
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"{what}: {problem}")


# Fields that may be None ("not set"), and fields that are a number of seconds.
_OPTIONAL = frozenset({"control_token", "max_concurrency", "tls_cert", "tls_key", "tls_client_ca"})
_SECONDS = ("outbound_timeout", "client_timeout", "body_timeout", "busy_timeout", "hang_seconds")


# Top-level keys of the config file that set one Settings field: key -> (field, type).
_SIMPLE: dict[str, tuple[str, type]] = {
    "db": ("db_path", str),
    "max_body_bytes": ("max_body_bytes", int),
    "journal_limit": ("journal_limit", int),
    "timezone": ("timezone", str),
    "control_token": ("control_token", str),
    **{name: (name, float) for name in _SECONDS},
    "magic_values": ("magic_values", bool),
    "offline": ("offline", bool),
    "max_concurrency": ("max_concurrency", int),
    "access_log": ("access_log", bool),
    "tls_cert": ("tls_cert", str),
    "tls_key": ("tls_key", str),
    "tls_client_ca": ("tls_client_ca", str),
    "validate_responses": ("validate_responses", bool),
}
_TOP_KEYS = set(_SIMPLE) | {"token_ttl_hours", "retention_days", "ipg", "bank", "paths"}
_IPG_KEYS = {"bank_url", "banks"}
_BANK_ACCOUNT_KEYS = {"username", "password", "password_hash", "shortcodes", "url"}
_BANK_KEYS = {"ipg_url", "username", "password", "shortcode"}


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where} must be a {kind.__name__}, not {value!r}")
    return value


def _days(days: float, where: str) -> timedelta:
    if not days > 0 or days == float("inf"):
        raise ConfigError(f"{where} must be a number of days more than 0, not {days!r}")
    return timedelta(days=days)


def _from_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    _check_keys(data, _TOP_KEYS, str(path))
    out: dict[str, Any] = {}
    for key, (name, kind) in _SIMPLE.items():
        if key in data:
            out[name] = _typed(data[key], kind, key)
    if "token_ttl_hours" in data:
        out["token_ttl"] = timedelta(hours=_typed(data["token_ttl_hours"], float, "token_ttl_hours"))
    if "retention_days" in data:
        out["retention"] = _days(_typed(data["retention_days"], float, "retention_days"), "retention_days")
    ipg = _typed(data.get("ipg", {}), dict, "[ipg]")
    _check_keys(ipg, _IPG_KEYS, "[ipg]")
    if "bank_url" in ipg:
        out["bank_url"] = _typed(ipg["bank_url"], str, "ipg.bank_url")
    if "banks" in ipg:
        banks = []
        for i, entry in enumerate(_typed(ipg["banks"], list, "ipg.banks")):
            where = f"ipg.banks[{i}]"
            _check_keys(_typed(entry, dict, where), _BANK_ACCOUNT_KEYS, where)
            if "username" not in entry:
                raise ConfigError(f"{where}: username is required")
            shortcodes = _typed(entry.get("shortcodes", []), list, f"{where}.shortcodes")
            banks.append(
                BankAccount(
                    username=_typed(entry["username"], str, f"{where}.username"),
                    password=entry.get("password"),
                    password_hash=entry.get("password_hash"),
                    shortcodes=tuple(_typed(s, str, f"{where}.shortcodes") for s in shortcodes),
                    url=entry.get("url"),
                )
            )
        if not banks:
            raise ConfigError("ipg.banks: configure at least one bank")
        out["banks"] = tuple(banks)
    bank = _typed(data.get("bank", {}), dict, "[bank]")
    _check_keys(bank, _BANK_KEYS, "[bank]")
    for key, name in (
        ("ipg_url", "ipg_url"),
        ("username", "bank_username"),
        ("password", "bank_password"),
        ("shortcode", "bank_shortcode"),
    ):
        if key in bank:
            out[name] = _typed(bank[key], str, f"bank.{key}")
    if "paths" in data:
        paths = dict(OPERATION_PATHS)
        for operation, path in _typed(data["paths"], dict, "[paths]").items():
            paths[operation.replace("-", "_")] = _typed(path, str, f"paths.{operation}")
        out["paths"] = paths
    return out


# MPESA_ATM_<suffix> -> the Settings field it sets (and, for numbers, the type and how it is said).
_ENV_STRINGS = {
    "DB": "db_path",
    "BANK_URL": "bank_url",
    "IPG_URL": "ipg_url",
    "TIMEZONE": "timezone",
    "CONTROL_TOKEN": "control_token",
    # The bank's credentials at the iPG: the bank mock calls with them, fuzz sends them.
    "USERNAME": "bank_username",
    "PASSWORD": "bank_password",
    "SHORTCODE": "bank_shortcode",
    # serve over HTTPS (the role processes of `serve` read the flags' values from these too).
    "TLS_CERT": "tls_cert",
    "TLS_KEY": "tls_key",
    "TLS_CLIENT_CA": "tls_client_ca",
}
_ENV_NUMBERS: dict[str, tuple[str, type, str]] = {
    "MAX_BODY_BYTES": ("max_body_bytes", int, "a whole number"),
    "JOURNAL_LIMIT": ("journal_limit", int, "a whole number"),
    **{name.upper(): (name, float, "a number of seconds") for name in _SECONDS},
}
# true or 1, false or 0 (any case)
_ENV_BOOLS = {"ACCESS_LOG": "access_log", "VALIDATE_RESPONSES": "validate_responses"}
_BOOL_WORDS = {"true": True, "1": True, "false": False, "0": False}


def environment_variables() -> tuple[str, ...]:
    """Every variable the harness reads, MPESA_ATM_CONFIG first."""
    suffixes = (*_ENV_STRINGS, *_ENV_NUMBERS, "RETENTION_DAYS", *_ENV_BOOLS)
    return (ENV_PREFIX + "CONFIG", *(ENV_PREFIX + suffix for suffix in suffixes))


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suffix, name in _ENV_STRINGS.items():
        if env.get(ENV_PREFIX + suffix):
            out[name] = env[ENV_PREFIX + suffix]
    for suffix, (name, kind, what) in _ENV_NUMBERS.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw:
            try:
                out[name] = kind(raw)
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}{suffix} must be {what}, not {raw!r}") from None
    raw = env.get(ENV_PREFIX + "RETENTION_DAYS")
    if raw:
        try:
            days = float(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}RETENTION_DAYS must be a number of days, not {raw!r}") from None
        out["retention"] = _days(days, ENV_PREFIX + "RETENTION_DAYS")
    for suffix, name in _ENV_BOOLS.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw:
            if raw.lower() not in _BOOL_WORDS:
                raise ConfigError(f"{ENV_PREFIX}{suffix} must be true or false (1 or 0), not {raw!r}")
            out[name] = _BOOL_WORDS[raw.lower()]
    return out


def load_settings(
    *,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> Settings:
    """Settings from flags, then MPESA_ATM_* variables, then the config file, then the defaults.

    The config file is `config_file`, else $MPESA_ATM_CONFIG, else none. Flags that are None are
    not set.
    """
    env = os.environ if env is None else env
    config_file = config_file or env.get(ENV_PREFIX + "CONFIG") or None
    merged: dict[str, Any] = {}
    if config_file:
        merged |= _from_file(Path(config_file))
    merged |= _from_env(env)
    merged |= {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**merged)
    except TypeError as exc:  # a flag the Settings do not have: a programming error, said plainly
        raise ConfigError(str(exc)) from exc
