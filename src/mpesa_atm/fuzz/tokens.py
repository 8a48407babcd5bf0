"""Tokens that exist at a real iPG, made by real withdrawals in its sandbox, read from a CSV file
(`fuzz ipg --tokens FILE`) for the stateful run, which spends each on one lifecycle.

The columns are the provider-state parameters of "a token exists" and the mock's POST
/_harness/tokens (control.yaml), each value in its format of common.yaml.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from mpesa_atm.errors import UsageError
from mpesa_atm.spec import load_spec

__all__ = ["TOKEN_COLUMNS", "Token", "read_tokens"]


@dataclass(frozen=True)
class Token:
    """A token the target iPG knows: generated, neither redeemed nor reversed."""

    bank_transaction_ref: str
    transaction_id: str
    msisdn: str
    amount: str
    currency: str


@cache
def _formats() -> Mapping[str, Mapping[str, Any]]:
    """Each column's schema, from the control API's token request (the same fields, in common.yaml's
    formats)."""
    document = load_spec("control.yaml", role="ipg")
    body = document["paths"]["/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    return {name: schemas[body["properties"][name]["$ref"].rsplit("/", 1)[1]] for name in body["required"]}


# The CSV's columns: Token's fields (a test compares them with control.yaml and the provider state).
TOKEN_COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Token))


def _problem(column: str, value: str) -> str | None:
    """What is wrong with `value` in `column`, or None."""
    schema = _formats()[column]
    if "enum" in schema and value not in schema["enum"]:
        return f"{column} {value!r} is not one of the document's codes (e.g. {schema['enum'][0]})"
    pattern = schema.get("pattern")
    too_long = len(value) > schema.get("maxLength", len(value))
    if not value or too_long or (pattern and not re.fullmatch(pattern, value)):
        return f"{column} {value!r} is not in its format ({schema.get('description', '').strip()})"
    return None


def read_tokens(path: str | Path) -> tuple[Token, ...]:
    """The tokens listed in the CSV file at `path`: a header naming TOKEN_COLUMNS (in any order), then
    one token a line; blank lines are skipped.

    Raises UsageError (argument "tokens") naming the file and the line at fault."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}", argument="tokens") from None

    def wrong(line: int, reason: str) -> UsageError:
        return UsageError(f"{path} line {line}: {reason}", argument="tokens")

    numbered = [(number, row) for number, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not numbered:
        raise UsageError(f"{path} is empty: expected the header {','.join(TOKEN_COLUMNS)}", argument="tokens")
    header_line, header = numbered[0]
    names = [name.strip() for name in header]
    if sorted(names) != sorted(TOKEN_COLUMNS):
        raise wrong(header_line, f"the header must be {','.join(TOKEN_COLUMNS)}, not {','.join(names)}")
    tokens: list[Token] = []
    seen: dict[str, int] = {}
    for number, row in numbered[1:]:
        if len(row) != len(names):
            raise wrong(number, f"{len(row)} values, expected {len(names)} ({','.join(names)})")
        values = dict(zip(names, (value.strip() for value in row), strict=True))
        for column in TOKEN_COLUMNS:
            problem = _problem(column, values[column])
            if problem:
                raise wrong(number, problem)
        reference = values["bank_transaction_ref"]
        if reference in seen:
            raise wrong(number, f"bank_transaction_ref {reference!r} is already on line {seen[reference]}")
        seen[reference] = number
        tokens.append(Token(**values))
    if not tokens:
        raise wrong(header_line, "a header but no token: list one token a line under it")
    return tuple(tokens)
