"""The bank's password, and a header that looks secret, are never shown: one masking for journals,
logs, reports and reproducers.

A password sits in `input_Password` of a Token Redemption or Reversal; a hostile body may nest it
anywhere, or send it as text that is not JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MASK", "PASSWORD_FIELD", "is_secret_header", "masked", "masked_body", "masked_text"]

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
    as masked text."""
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return masked_text(raw[:limit].decode("utf-8", errors="replace"))
    try:
        return masked(parsed)
    except RecursionError:  # parsed, but too deep to walk: keep only its shape
        return "<JSON nested too deeply to journal>"
