"""Every request and answer of a campaign or a verification as an HTTP Archive (HAR 1.2), which
browsers' developer tools and HAR viewers open; passwords and Authorization headers masked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mpesa_atm import __version__
from mpesa_atm.reporting.exchange import Exchange, Headers, masked_headers, shown_body

__all__ = ["har_document", "write_har"]


def _headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in masked_headers(headers)]


def _mime_type(headers: Headers) -> str:
    for name, value in headers:
        if name.lower() == "content-type":
            return value
    return ""


def _entry(exchange: Exchange) -> dict[str, Any]:
    milliseconds = round(exchange.elapsed * 1000, 3)
    request: dict[str, Any] = {
        "method": exchange.method,
        "url": exchange.url,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": _headers(exchange.request_headers),
        "queryString": [
            {"name": name, "value": value}
            for name, value in parse_qsl(urlsplit(exchange.url).query, keep_blank_values=True)
        ],
        "headersSize": -1,
        "bodySize": len(exchange.request_body),
    }
    if exchange.request_body:
        request["postData"] = {
            "mimeType": _mime_type(exchange.request_headers),
            "text": shown_body(exchange.request_body),
        }
    text = shown_body(exchange.response_body)
    response: dict[str, Any] = {
        "status": exchange.status or 0,
        "statusText": exchange.reason if exchange.status is not None else "",
        "httpVersion": "HTTP/1.1" if exchange.status is not None else "",
        "cookies": [],
        "headers": _headers(exchange.response_headers),
        "content": {
            "size": len(exchange.response_body),
            "mimeType": _mime_type(exchange.response_headers),
            "text": text,
        },
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": len(exchange.response_body) if exchange.status is not None else -1,
    }
    entry: dict[str, Any] = {
        "startedDateTime": exchange.started.isoformat(timespec="milliseconds"),
        "time": milliseconds,
        "request": request,
        "response": response,
        "cache": {},
        # The harness times the whole exchange: it is all "wait" to it.
        "timings": {"send": 0, "wait": milliseconds, "receive": 0},
    }
    if exchange.label:
        entry["comment"] = exchange.label
    if exchange.status is None:
        entry["_error"] = exchange.reason or "no answer"  # as browsers record a failed request
    return entry


def har_document(exchanges: Iterable[Exchange], *, comment: str = "") -> dict[str, Any]:
    """The HAR 1.2 log of `exchanges`, in the order they were sent."""
    log: dict[str, Any] = {
        "version": "1.2",
        "creator": {"name": "mpesa-atm-harness", "version": __version__},
        "entries": [_entry(exchange) for exchange in sorted(exchanges, key=lambda e: e.started)],
    }
    if comment:
        log["comment"] = comment
    return {"log": log}


def write_har(path: str | Path, exchanges: Iterable[Exchange], *, comment: str = "") -> None:
    text = json.dumps(har_document(exchanges, comment=comment), indent=1, ensure_ascii=False)
    Path(path).write_text(text + "\n", encoding="utf-8")
