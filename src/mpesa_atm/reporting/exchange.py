"""One request and its answer as the harness saw it on the wire, the one record that the HAR file, the
charts and the verification report read; the password is masked when it is written out, not here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mpesa_atm.codes import MAPPED_CODES
from mpesa_atm.masking import MASK, is_secret_header, masked, masked_text

__all__ = ["MAPPED_CODES", "Exchange", "answer_class", "headers_of", "masked_headers", "shown_body"]


Headers = tuple[tuple[str, str], ...]


def headers_of(headers: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Headers:
    """Name/value pairs from a mapping (a value may be a list of values) or from pairs."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(name), str(item)) for item in values)
    return tuple(pairs)


@dataclass(frozen=True)
class Exchange:
    """A request sent and what came back: an answer (`status`), or none (`status` None, `reason` why)."""

    started: datetime  # aware, when the request was sent
    elapsed: float  # seconds until the answer, or until none was given up on
    method: str
    url: str
    request_headers: Headers
    request_body: bytes
    status: int | None
    reason: str = ""  # the status's reason phrase, or why no answer came
    response_headers: Headers = ()
    response_body: bytes = b""
    label: str = ""  # what it was: "POST /token-generation", or "control" for a mock's control API

    @property
    def response_code(self) -> str | None:
        """The answer's output_ResponseCode, or None when it has none."""
        try:
            body = json.loads(self.response_body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        code = body.get("output_ResponseCode") if isinstance(body, dict) else None
        return code if isinstance(code, str) else None


def answer_class(exchange: Exchange) -> str:
    """What an answer was, for the answer-code chart: a code of section 4 (`0`, `-1` ... `-9`), an
    `unmapped code`, `HTTP 4xx` or `HTTP 5xx` without a code, an answer that is `not JSON / truncated`
    (a body cut short is no JSON either) or JSON with `no response code`, or `no answer`."""
    if exchange.status is None:
        return "no answer"
    code = exchange.response_code
    if code is not None:
        return code if code in MAPPED_CODES else "unmapped code"
    if exchange.status >= 500:
        return "HTTP 5xx"
    if exchange.status >= 400:
        return "HTTP 4xx"
    try:
        json.loads(exchange.response_body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "not JSON / truncated"
    return "no response code"


def masked_headers(headers: Headers) -> Headers:
    return tuple((name, MASK if is_secret_header(name) else value) for name, value in headers)


def shown_body(raw: bytes) -> str:
    """A body as it may be shown: text, with every input_Password masked (the JSON left as it was sent
    when it holds none)."""
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return masked_text(text)
    try:
        hidden = masked(parsed)
    except RecursionError:
        return masked_text(text)
    return text if hidden == parsed else json.dumps(hidden, ensure_ascii=False)
