"""Every setting of the mocks, declared once: its default, bounds, key in the config file, MPESA_ATM_*
variable and flag side by side (`Settings`' fields); the loader, the variables and the flags follow.

Precedence: an explicit flag > an MPESA_ATM_* environment variable > the config file > the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mpesa_atm import settings_table
from mpesa_atm.errors import ConfigError
from mpesa_atm.operations import CONTROL_PREFIX
from mpesa_atm.passwords import is_password_hash, verify_password, verify_password_off_loop
from mpesa_atm.settings_table import (
    DAYS,
    ENV_PREFIX,
    FILE,
    HOURS,
    SECONDS,
    SWITCH,
    URL,
    WHOLE,
    Kind,
    check_keys,
    check_url,
    read_env,
    read_file,
    setting,
    table_of,
    typed,
)
from mpesa_atm.spec import OPERATION_PATHS

__all__ = [
    "DOCUMENT_BANK",
    "ENV_PREFIX",
    "KEEP_ALIVE_SECONDS",
    "BankAccount",
    "Settings",
    "add_flags",
    "database_for_processes",
    "database_label",
    "environment_variables",
    "flags_of",
    "is_database_url",
    "load_settings",
    "utc_now",
    "variables_of",
]

_CHECKED_LIMIT = 1024  # passwords remembered per hashed bank
# Seconds an idle connection is kept open. A client must give up reusing a connection before the
# server closes it: uvicorn's default, 5 s, is httpx's own expiry, so a call sent at about 5 s could
# meet the close. Longer than clients' pools and the 60 s idle timeout common to load balancers in
# front of a sandbox; nginx's default.
KEEP_ALIVE_SECONDS = 75.0


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


def database_for_processes(db: str) -> str:
    """The `db` setting as other processes get it (serve's role processes): a file's absolute path,
    or as given."""
    return db if db == ":memory:" or is_database_url(db) else str(Path(db).resolve())


def _banks(entries: list[Any], where: str) -> tuple[BankAccount, ...]:
    banks = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        check_keys(typed(entry, dict, at), _BANK_ACCOUNT_KEYS, at)
        if "username" not in entry:
            raise ConfigError(f"{at}: username is required")
        shortcodes = typed(entry.get("shortcodes", []), list, f"{at}.shortcodes")
        banks.append(
            BankAccount(
                username=typed(entry["username"], str, f"{at}.username"),
                password=entry.get("password"),
                password_hash=entry.get("password_hash"),
                shortcodes=tuple(typed(s, str, f"{at}.shortcodes") for s in shortcodes),
                url=entry.get("url"),
            )
        )
    if not banks:
        raise ConfigError(f"{where}: configure at least one bank")
    return tuple(banks)


def _paths(table: dict[str, Any], where: str) -> dict[str, str]:
    paths = dict(OPERATION_PATHS)
    for operation, path in table.items():
        paths[operation.replace("-", "_")] = typed(path, str, f"paths.{operation}")
    return paths


DATABASE = Kind(str, text=database_for_processes)
BANKS = Kind(list, finish=_banks)  # [[ipg.banks]]
PATHS = Kind(dict, finish=_paths)  # [paths]


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
    # The passwords that verified against password_hash in this process: the only ones of a hashed
    # bank a mock can mask by value.
    verified: set[str] = field(default_factory=set, compare=False, repr=False)

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
        """Whether `candidate` is this bank's password (scrypt in this thread: not on an event loop)."""
        if self.password is not None:
            return hmac.compare_digest(self.password.encode(), candidate.encode())
        assert self.password_hash is not None
        known = self._checked.get(key := hashlib.sha256(candidate.encode()).digest())
        if known is None:
            known = self._remember(key, candidate, verify_password(self.password_hash, candidate))
        return known

    async def password_checked(self, candidate: str) -> bool:
        """`password_matches` for a mock: a hash is checked off the event loop, then remembered."""
        if self.password is not None:
            return self.password_matches(candidate)
        assert self.password_hash is not None
        known = self._checked.get(key := hashlib.sha256(candidate.encode()).digest())
        if known is None:
            outcome = await verify_password_off_loop(self.password_hash, candidate)
            known = self._remember(key, candidate, outcome)
        return known

    def _remember(self, key: bytes, candidate: str, outcome: bool) -> bool:
        if len(self._checked) >= _CHECKED_LIMIT:  # bounded: forget the oldest
            del self._checked[next(iter(self._checked))]
        self._checked[key] = outcome
        if outcome:  # now known in clear: masked by value from here on (masking.Secrets)
            self.verified.add(candidate)
        return outcome


# The sample bank of the document (2.1.2.1), so the document's examples work out of the box.
DOCUMENT_BANK = BankAccount(username="fnb", password="P@ssword123", shortcodes=("49272",))


@dataclass(frozen=True)
class Settings:
    """Everything a mock needs, each setting declared once: its default, then how it is set
    (`Setting`). Public signatures take None for "not set"; the defaults live here."""

    db_path: str = setting(
        "mpesa-atm.sqlite3",
        DATABASE,
        file="db",
        variable="DB",
        flag="--db",
        metavar="PATH|URL",
        help="SQLite file, :memory:, or postgresql://user@host:port/name to share one store between"
        " instances (default ./mpesa-atm.sqlite3)",
    )
    # iPG mock: the banks it knows, and where it calls Token Generation by default.
    banks: tuple[BankAccount, ...] = setting((DOCUMENT_BANK,), BANKS, file="ipg.banks")
    bank_url: str = setting(
        "http://127.0.0.1:8002",
        URL,
        file="ipg.bank_url",
        variable="BANK_URL",
        flag="--bank-url",
        help="where the iPG mock calls Token Generation",
    )
    # Bank mock: the iPG it calls, and the credentials it calls with (also those `fuzz ipg` sends).
    ipg_url: str = setting(
        "http://127.0.0.1:8001",
        URL,
        file="bank.ipg_url",
        variable="IPG_URL",
        flag="--ipg-url",
        help="where the bank mock calls the iPG",
    )
    bank_username: str = setting(
        "fnb",
        file="bank.username",
        variable="USERNAME",
        flag="--username",
        help="the bank's username (default: the document's, fnb)",
    )
    bank_password: str = setting(
        "P@ssword123",
        file="bank.password",
        variable="PASSWORD",
        flag="--password",
        help=f"prefer {ENV_PREFIX}PASSWORD: a flag shows in the process list",
    )
    bank_shortcode: str = setting(
        "49272",
        file="bank.shortcode",
        variable="SHORTCODE",
        flag="--shortcode",
        help="a shortcode linked to the username (default: 49272)",
    )
    timezone: str = setting("UTC", file="timezone", variable="TIMEZONE")  # of output_BankDateTime
    # Both: operation paths, limits, control API.
    paths: Mapping[str, str] = setting(None, PATHS, factory=lambda: dict(OPERATION_PATHS), file="paths")
    # (RUF009 does not know that setting() makes a dataclasses.field.)
    token_ttl: timedelta = setting(timedelta(days=2), HOURS, file="token_ttl_hours")  # noqa: RUF009
    # Tokens and transactions older than this are removed (mocks/retention.py); never inside token_ttl.
    retention: timedelta = setting(  # noqa: RUF009
        timedelta(days=7),
        DAYS,
        file="retention_days",
        variable="RETENTION_DAYS",
        flag="--retention-days",
        help="remove tokens and transactions older than this (7; at least token_ttl_hours)",
    )
    max_body_bytes: int = setting(
        64 * 1024,
        WHOLE,
        file="max_body_bytes",
        variable="MAX_BODY_BYTES",
        minimum=1024,
        flag="--max-body-bytes",
        help="largest request body (64 KiB)",
    )
    journal_limit: int = setting(10_000, WHOLE, file="journal_limit", variable="JOURNAL_LIMIT", minimum=1)
    # the mock's own calls to the other side (its drivers)
    outbound_timeout: float = setting(10.0, SECONDS, file="outbound_timeout", variable="OUTBOUND_TIMEOUT")
    # fuzz and verify: seconds to wait for a partner's answer (their --timeout's default)
    client_timeout: float = setting(10.0, SECONDS, file="client_timeout", variable="CLIENT_TIMEOUT")
    # a request body that has not arrived by then is answered 408
    body_timeout: float = setting(10.0, SECONDS, file="body_timeout", variable="BODY_TIMEOUT")
    # Connections (mocks/connection_limits.py): the request line and headers over this are answered 431
    max_header_bytes: int = setting(
        32 * 1024, WHOLE, file="max_header_bytes", variable="MAX_HEADER_BYTES", minimum=1024
    )
    # a request line and headers not in by then (from the connection's opening, or the request's first
    # byte on a kept-alive one) are answered 408, or the connection closed if nothing came
    header_timeout: float = setting(10.0, SECONDS, file="header_timeout", variable="HEADER_TIMEOUT")
    keep_alive: float = setting(KEEP_ALIVE_SECONDS, SECONDS, file="keep_alive", variable="KEEP_ALIVE")
    # open connections per worker; at the cap the longest idle one is closed for a new one. None: the
    # worker's open-file limit less a quarter of it (at most 256) for its own files
    max_connections: int | None = setting(
        None, WHOLE, file="max_connections", variable="MAX_CONNECTIONS", minimum=1
    )
    # a write waits this long for another process's lock, then -7
    busy_timeout: float = setting(5.0, SECONDS, file="busy_timeout", variable="BUSY_TIMEOUT")
    # a "hang" fault holds the answer this long, then answers -1
    hang_seconds: float = setting(30.0, SECONDS, file="hang_seconds", variable="HANG_SECONDS")
    control_token: str | None = setting(
        None,
        file="control_token",
        variable="CONTROL_TOKEN",
        flag="--control-token",
        metavar="TOKEN",
        help=f"require 'Authorization: Bearer TOKEN' on {CONTROL_PREFIX}/ (needed off loopback); prefer"
        f" --control-token-file or {ENV_PREFIX}CONTROL_TOKEN: a flag shows in the process list",
    )
    # Read into control_token where it is given (load_settings): a token kept out of the process list.
    control_token_file: str | None = setting(
        None,
        FILE,
        file="control_token_file",
        variable="CONTROL_TOKEN_FILE",
        flag="--control-token-file",
        help="read the control token from this file (its text, less the final newline)",
    )
    # Fault modes at start-up (the control API's /_harness/modes changes them at run time).
    magic_values: bool = setting(True, SWITCH, file="magic_values")
    offline: bool = setting(False, SWITCH, file="offline")
    max_concurrency: int | None = setting(None, WHOLE, file="max_concurrency")
    access_log: bool = setting(
        False,
        SWITCH,
        file="access_log",
        variable="ACCESS_LOG",
        flag="--access-log",
        help="one line per call on stdout: time, role, method, path, status, response code, ms (off)",
    )
    # serve (the mocks, or the proxy) over HTTPS: the certificate (PEM, its key in it unless tls_key),
    # and with tls_client_ca a client certificate signed by one of those CAs is required (mutual TLS).
    tls_cert: str | None = setting(
        None,
        FILE,
        file="tls_cert",
        variable="TLS_CERT",
        flag="--tls-cert",
        help="the certificate to serve (PEM; its key in it unless --tls-key)",
    )
    tls_key: str | None = setting(
        None,
        FILE,
        file="tls_key",
        variable="TLS_KEY",
        flag="--tls-key",
        help="the certificate's private key (PEM, no passphrase)",
    )
    tls_client_ca: str | None = setting(
        None,
        FILE,
        file="tls_client_ca",
        variable="TLS_CLIENT_CA",
        flag="--tls-client-ca",
        help="require a client certificate signed by a CA in this PEM file (mutual TLS)",
    )
    # `mpesa-atm proxy`: the partner it forwards each operation to (its base URL, the operation's path
    # appended), and whether it refuses what breaks the document instead of passing it on.
    upstream: str | None = setting(
        None,
        URL,
        file="proxy.upstream",
        variable="UPSTREAM",
        flag="--upstream",
        help="the partner's base URL: each of the role's operations is forwarded to it, at its path",
    )
    proxy_errors: bool = setting(
        False,
        SWITCH,
        file="proxy.errors",
        variable="PROXY_ERRORS",
        flag="--errors",
        help="refuse a request that breaks the document (400, never forwarded) and replace an answer "
        "that breaks it (502), each in the envelope naming the violation (off: pass them on, marked)",
    )
    # The API's calls through connexion, each answer checked against the document (debugging; slower)
    validate_responses: bool = setting(
        False, SWITCH, file="validate_responses", variable="VALIDATE_RESPONSES"
    )
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"timezone {self.timezone!r} is not an IANA time zone") from exc
        for name, how in _SETTINGS.items():
            if how.kind is not URL:
                how.check(name, getattr(self, name))
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
            raise ConfigError("tls_key and tls_client_ca need tls_cert: the server's own certificate")
        for name, how in _SETTINGS.items():  # the URLs last, as ever: the first problem is the one said
            if how.kind is URL:
                how.check(name, getattr(self, name))
        for account in self.banks:
            if account.url is not None:
                check_url(f"bank {account.username!r}: url", account.url)
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


# Each setting and how it is set, in the order of the fields; the fields that may be None ("not set").
_SETTINGS = table_of(Settings)
_OPTIONAL = frozenset(f.name for f in dataclasses.fields(Settings) if f.default is None)
_BANK_ACCOUNT_KEYS = {"username", "password", "password_hash", "shortcodes", "url"}


def environment_variables() -> tuple[str, ...]:
    """Every variable the harness reads, MPESA_ATM_CONFIG first."""
    variables = (how.variable for how in _SETTINGS.values() if how.variable is not None)
    return (ENV_PREFIX + "CONFIG", *(ENV_PREFIX + variable for variable in variables))


def variables_of(settings: Settings, names: Iterable[str]) -> dict[str, str]:
    """The MPESA_ATM_* variables that give the settings `names` their values in another process (files
    by absolute path); a setting that is not set (None, or empty) is left out."""
    return settings_table.variables_of(settings, _SETTINGS, names)


def add_flags(parser: argparse.ArgumentParser | Any, *names: str, **helps: str) -> None:
    """Adds the flags of the settings `names` to `parser` (or an argument group), each to the Namespace
    under the setting's name, None when not given. `helps` words a flag for a command that uses its
    setting its own way (fuzz sends the control token that serve requires)."""
    settings_table.add_flags(parser, _SETTINGS, names, helps)


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags that `add_flags` added set in `args`, for load_settings (None: not given)."""
    return settings_table.flags_of(args, _SETTINGS)


def _with_token_read(source: dict[str, Any]) -> dict[str, Any]:
    """`source` (one of the config file, the variables, the flags) with the control token read from
    its control_token_file, if it names one: a file given with a flag beats a token in a variable."""
    path = source.get("control_token_file")
    if not path:
        return source
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"control_token_file: cannot read {path}: {reason}") from None
    if not token:
        raise ConfigError(f"control_token_file: {path} is empty")
    return {**source, "control_token": token}


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
    sources = [read_file(Path(config_file), _SETTINGS)] if config_file else []
    sources += [read_env(env, _SETTINGS), {k: v for k, v in flags.items() if v is not None}]
    merged: dict[str, Any] = {}
    for source in sources:
        merged |= _with_token_read(source)
    try:
        return Settings(**merged)
    except TypeError as exc:  # a flag the Settings do not have: a programming error, said plainly
        raise ConfigError(str(exc)) from exc
