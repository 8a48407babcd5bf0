"""Reproducers: a curl command that sends a case again as it was sent, the bank's password read from
the environment rather than printed."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from mpesa_atm.masking import masked
from mpesa_atm.settings import ENV_PREFIX

__all__ = ["PASSWORD_VARIABLE", "curl_command"]

# Reproducers never print the bank's password: they read it from this variable.
PASSWORD_VARIABLE = ENV_PREFIX + "PASSWORD"
_SECRET_MARK = "\x00mpesa-atm-secret\x00"


def _printf_octal(data: bytes) -> str:
    """`data` as a printf format that prints it exactly (POSIX printf understands \\NNN)."""
    out = []
    for byte in data:
        char = chr(byte)
        if 32 <= byte < 127 and char not in "\\%'":
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "'" + "".join(out) + "'"


def curl_command(
    url: str,
    body: Any,
    *,
    media_type: str = "application/json",
    secret: str | None = None,
    options: Sequence[str] = (),
) -> str:
    """A curl command that sends `body` to `url`; a password equal to `secret` is read from the env.
    `options` are more curl arguments, already quoted for the shell (the network's: --cacert, -H ...)."""
    head = [
        "curl",
        "-sS",
        *options,
        "-X",
        "POST",
        shlex.quote(url),
        "-H",
        shlex.quote(f"Content-Type: {media_type}"),
    ]
    if isinstance(body, bytes):
        return f"printf {_printf_octal(body)} | " + " ".join([*head, "--data-binary", "@-"])
    if body is None or not isinstance(body, (dict, list, str, int, float, bool)):
        return " ".join(head)
    if isinstance(body, str) and "json" not in media_type:
        return " ".join([*head, "--data-raw", shlex.quote(body)])
    if secret:
        body = masked(body, mask=_SECRET_MARK, only=secret)
    pieces = json.dumps(body).split(json.dumps(_SECRET_MARK)[1:-1])
    data = f'"${PASSWORD_VARIABLE}"'.join(shlex.quote(piece) for piece in pieces)
    return " ".join([*head, "--data-raw", data])
