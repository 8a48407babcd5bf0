"""Tokens that exist at a real iPG, made by real withdrawals in its sandbox, read from a CSV file
(`fuzz ipg --tokens FILE`) for the stateful run, which spends each on one lifecycle.

The columns are the provider-state parameters of "a token exists" and the mock's POST
/_harness/tokens (control.yaml), each value in its format of common.yaml, and optionally `issued_at`:
when the bank generated the token, ISO 8601 with a time zone (2026-12-01T09:30:00Z). A token older
than the document's 2 days (section 4, spec-notes row 6: 48 hours) is spent on the probes that expect
-9 and never on a lifecycle that could pay it. Other columns are read past, and said so.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from mpesa_atm.errors import UsageError
from mpesa_atm.spec import load_spec

__all__ = [
    "ISSUED_AT",
    "KNOWN_COLUMNS",
    "MARGIN",
    "TOKEN_COLUMNS",
    "WINDOW",
    "Token",
    "age_of",
    "ignored_columns",
    "read_tokens",
]

# The document's window: -9 "looked up against the original bank reference within the last 2 days"
# (section 4), 48 hours on the iPG's own clock (docs/spec-notes.md row 6).
WINDOW = timedelta(hours=48)
# How far the iPG's clock may be from ours: a token within MARGIN of WINDOW is neither expected paid nor
# expected -9, and is left alone.
MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class Token:
    """A token the target iPG knows: generated, neither redeemed nor reversed; `issued_at` when the bank
    generated it (None: not said, taken as within 2 days)."""

    bank_transaction_ref: str
    transaction_id: str
    msisdn: str
    amount: str
    currency: str
    issued_at: datetime | None = None
    # Where the token was read ("tokens.csv line 3"), and the file's columns that were not read.
    source: str = field(default="", compare=False, repr=False)
    ignored: tuple[str, ...] = field(default=(), compare=False, repr=False)


def age_of(token: Token, now: datetime) -> str:
    """The token's standing at `now` by its issued_at: "valid" (within 2 days, or not said), "expired"
    (more than 2 days and MARGIN ago), or "edge" (within MARGIN of 2 days: the iPG's clock decides)."""
    if token.issued_at is None:
        return "valid"
    age = now - token.issued_at
    if age > WINDOW + MARGIN:
        return "expired"
    if age >= WINDOW - MARGIN:
        return "edge"
    return "valid"


def ignored_columns(tokens: Sequence[Token]) -> str | None:
    """A note on the columns of the tokens' file that were not read, or None."""
    ignored = tokens[0].ignored if tokens else ()
    if not ignored:
        return None
    where = tokens[0].source.rsplit(" line ", 1)[0] or "the tokens file"
    return (
        f"{where}: the columns {', '.join(ignored)} are not read (the known ones: {', '.join(KNOWN_COLUMNS)})"
    )


@cache
def _formats() -> Mapping[str, Mapping[str, Any]]:
    """Each column's schema, from the control API's token request (the same fields, in common.yaml's
    formats)."""
    document = load_spec("control.yaml", role="ipg")
    body = document["paths"]["/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    return {name: schemas[body["properties"][name]["$ref"].rsplit("/", 1)[1]] for name in body["required"]}


# The CSV's columns: Token's fields that the control API's token takes (a test compares them with
# control.yaml and the provider state), then the optional one.
TOKEN_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Token))[:5]
ISSUED_AT = "issued_at"
KNOWN_COLUMNS: tuple[str, ...] = (*TOKEN_COLUMNS, ISSUED_AT)


def _issued_at(value: str) -> datetime | str:
    """The column's value as an aware datetime, or what is wrong with it."""
    example = "e.g. 2026-12-01T09:30:00Z"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return f"{ISSUED_AT} {value!r} is not an ISO 8601 date and time ({example})"
    if when.tzinfo is None or when.utcoffset() is None:
        return f"{ISSUED_AT} {value!r} has no time zone: add Z or an offset ({example})"
    return when


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
    """The tokens listed in the CSV file at `path`: a header naming TOKEN_COLUMNS (in any order, with
    issued_at if wanted, other columns read past), then one token a line; blank lines are skipped. An
    empty issued_at says nothing of the token's age.

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
    missing = [column for column in TOKEN_COLUMNS if column not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if missing or repeated:
        said = f"no {', '.join(missing)}" if missing else f"{', '.join(repeated)} twice"
        raise wrong(
            header_line,
            f"the header must name {','.join(TOKEN_COLUMNS)} (and {ISSUED_AT} if wanted), not"
            f" {','.join(names)} ({said})",
        )
    ignored = tuple(name for name in names if name not in KNOWN_COLUMNS)
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
        issued_at: datetime | None = None
        if values.get(ISSUED_AT):
            parsed = _issued_at(values[ISSUED_AT])
            if isinstance(parsed, str):
                raise wrong(number, f"column {names.index(ISSUED_AT) + 1}: {parsed}")
            issued_at = parsed
        reference = values["bank_transaction_ref"]
        if reference in seen:
            raise wrong(number, f"bank_transaction_ref {reference!r} is already on line {seen[reference]}")
        seen[reference] = number
        known = {column: values[column] for column in TOKEN_COLUMNS}
        tokens.append(Token(**known, issued_at=issued_at, source=f"{path} line {number}", ignored=ignored))
    if not tokens:
        raise wrong(header_line, "a header but no token: list one token a line under it")
    return tuple(tokens)
