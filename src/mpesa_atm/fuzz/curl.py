"""Reproducers: a curl command that sends a case again as it was sent, the bank's password read from
the environment rather than printed; and the shell lines that let a lifecycle's reproducer make a token
of its own and quote it (`captured`, `with_variables`), so that it reproduces on any partner, not only
in the run that printed it."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from mpesa_atm.masking import masked
from mpesa_atm.settings import ENV_PREFIX

__all__ = ["PASSWORD_VARIABLE", "captured", "curl_command", "made_up", "with_variables"]

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


_PLAIN = re.compile(r"[A-Za-z0-9]+")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def with_variables(command: str, variables: Mapping[str, str]) -> str:
    """`command` (of curl_command) with each JSON string whose value is one of `variables` (name ->
    value) quoting the shell variable of that name instead, e.g. {"ref": "12ab..."} makes
    `'{"input_BankTransactionRef": "'"$ref"'"}'`.

    A value is letters and digits (a reference, a TransactionID), whole JSON strings of the body only:
    they occur inside its single quotes, where closing the quotes around "$name" is sound. Other values
    are left as they are."""
    for name, value in variables.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        if _PLAIN.fullmatch(value):
            command = command.replace(f'"{value}"', f'"\'"${name}"\'"')
    return command


def captured(command: str, fields: Mapping[str, str]) -> tuple[str, ...]:
    """Shell lines that run `command` (a curl printing a JSON object) and keep each field of its answer
    in a variable, `fields` being variable -> field, e.g. {"ref": "bank_transaction_ref"}."""
    lines = [f"made=$({command})"]
    for name, key in fields.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        if not _NAME.fullmatch(key):
            raise ValueError(f"not a field of the control API: {key!r}")
        script = shlex.quote(f'import json,sys; print(json.load(sys.stdin)["{key}"])')
        lines.append(f'{name}=$(printf %s "$made" | python3 -c {script})')
    return tuple(lines)


def made_up(name: str, kind: str) -> str:
    """A shell line that sets variable `name` to a new random value of `kind`: "reference" (32
    lower-case hex characters, an input_BankTransactionRef) or "transaction" (10 upper-case letters and
    digits, a G2 TransactionID)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a shell variable name: {name!r}")
    scripts = {
        "reference": "import secrets; print(secrets.token_hex(16))",
        "transaction": "import secrets,string; a=string.ascii_uppercase+string.digits; "
        'print("".join(secrets.choice(a) for _ in range(10)))',
    }
    return f"{name}=$(python3 -c {shlex.quote(scripts[kind])})"
