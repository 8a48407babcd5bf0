"""The bank's password, and a header that looks secret, are never shown: one masking for journals,
logs, reports and reproducers.

A password sits in `input_Password` of a Token Redemption or Reversal; a hostile body may nest it
anywhere, or send it as text that is not JSON. A mock also knows the passwords themselves, and masks
them by value (`Secrets`) wherever they are: a misspelt field, a query string, a form, escapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = [
    "MASK",
    "PASSWORD_FIELD",
    "Secrets",
    "is_secret_header",
    "masked",
    "masked_body",
    "masked_text",
]

MASK = "********"
PASSWORD_FIELD = "input_Password"
# In text that is not JSON (a broken body, a query string): the value after input_Password, quoted
# (up to its closing quote or where the text was cut) or bare (up to a separator).
_PASSWORD_IN_TEXT = re.compile(
    r"""(["']?input_Password["']?\s*[:=]\s*)"""
    r"""("(?:[^"\\]|\\.)*(?:"|\\?$)|'[^']*(?:'|$)|[^\s,;&}]*)"""
)

# Headers whose value is a secret: these, and any whose name has one of the words (X-Api-Key,
# X-Auth-Token, Ocp-Apim-Subscription-Key): a gateway's credentials given with -H.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_WORDS = ("token", "key", "secret", "password", "auth", "session", "signature", "credential")
_NOT_SECRET = frozenset({"www-authenticate", "proxy-authenticate"})  # the scheme wanted: worth seeing


def is_secret_header(name: str) -> bool:
    """Whether a header's value is a secret, by its name."""
    lower = name.lower()
    if lower in _NOT_SECRET:
        return False
    return lower in _SECRET_HEADERS or any(word in lower for word in _SECRET_WORDS)


def masked(value: Any, *, mask: str = MASK, only: str | None = None) -> Any:
    """A copy of `value` with every `input_Password` replaced by `mask`, however deep; with `only`,
    just the passwords equal to it (a wrong password a test sent on purpose is no secret)."""
    if isinstance(value, dict):
        return {
            key: mask
            if key == PASSWORD_FIELD and (only is None or item == only)
            else masked(item, mask=mask, only=only)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item, mask=mask, only=only) for item in value]
    return value


def masked_text(text: str) -> str:
    """`text` with the value after each `input_Password` masked."""
    return _PASSWORD_IN_TEXT.sub(lambda m: m.group(1) + MASK, text)


def masked_body(raw: bytes, *, limit: int = 4096) -> Any:
    """A request body to keep: parsed JSON with the password masked, else the first `limit` bytes
    as masked text (in UTF-16 or UTF-32 when the bytes say so, as json.loads reads them: a password
    then reads as itself, not as letters between NUL bytes)."""
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return masked_text(raw[:limit].decode(json.detect_encoding(raw), errors="replace"))
    try:
        return masked(parsed)
    except RecursionError:  # parsed, but too deep to walk: keep only its shape
        return "<JSON nested too deeply to journal>"


# A password shorter than this is masked by name only: by value, a password of one or two characters
# would mask every digit or letter like it in the journal.
SHORTEST_MASKED_BY_VALUE = 4
_MAY_ENCODE = re.compile(r"[\\%+]")  # what the other spellings of a password start with
_CONTROL_ESCAPES = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}


class _Bank(Protocol):  # settings.BankAccount, which this leaf does not import
    @property
    def password(self) -> str | None: ...

    @property
    def verified(self) -> set[str]: ...


def _char_forms(char: str) -> str:
    """A pattern for `char` as a body or its journal may spell it: itself (after any backslashes:
    JSON's \\" and \\/, or a text re-escaped), a JSON \\u escape (of a text re-escaped too),
    percent-encoded UTF-8 (a query string, a form), + for a space."""
    units = char.encode("utf-16-be")
    escape = "".join(rf"\\+u(?i:{units[i : i + 2].hex()})" for i in range(0, len(units), 2))
    forms = [r"\\*" + re.escape(char), escape, "".join(f"%(?i:{b:02x})" for b in char.encode())]
    if char in _CONTROL_ESCAPES:
        forms.append(r"\\+" + _CONTROL_ESCAPES[char])
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


def _pattern_of(values: Iterable[str]) -> re.Pattern[str] | None:
    masked_values = sorted((v for v in values if len(v) >= SHORTEST_MASKED_BY_VALUE), key=len, reverse=True)
    if not masked_values:
        return None
    return re.compile("|".join("".join(_char_forms(c) for c in value) for value in masked_values))


class Secrets:
    """The passwords a mock knows, masked by value in whatever it stores or prints.

    `known` says them when asked: a bank's password in clear, and of a bank known by a hash, each
    password that verified against it in this process (the only ones known in clear)."""

    def __init__(self, known: Callable[[], Iterable[str]]) -> None:
        self._known = known
        self._compiled_for: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    @classmethod
    def of_banks(cls, banks: Iterable[_Bank], *others: str) -> Secrets:
        """The passwords of `banks` (settings.banks) and `others` (the bank mock's own password)."""
        accounts = tuple(banks)

        def known() -> Iterable[str]:
            for account in accounts:
                if account.password is not None:
                    yield account.password
                yield from account.verified
            yield from others

        return cls(known)

    def masked(self, text: str) -> str:
        """`text` with every spelling of a known password replaced by MASK."""
        (shown,) = self.masked_all(text)
        return shown

    def masked_all(self, *texts: str) -> tuple[str, ...]:
        """Each of `texts` masked as `masked` masks it, the passwords asked for once."""
        values = frozenset(self._known())
        if values != self._compiled_for:
            self._compiled_for, self._pattern = values, _pattern_of(values)
        pattern = self._pattern
        if pattern is None:
            return texts
        # No escape, no percent, no +: only a password as itself could be in a text.
        return tuple(
            pattern.sub(MASK, text)
            if _MAY_ENCODE.search(text) or any(value in text for value in values)
            else text
            for text in texts
        )
