"""The proxy's exchanges in the store's journal (the mocks' JournalRecord, direction `proxy`, so the
workers of one store share them): what the client sent and got, and in the response's record the
exchange's id, the upstream's status and the violations (each with its message and the exchanges it
reads, the exchange's curl once when there is any); and how `GET /_harness/journal` and
`GET /_harness/violations` show them, whichever worker of whichever proxy of the role on the store
journalled them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mpesa_atm.masking import Secrets, masked, masked_body
from mpesa_atm.mocks.journal import dumps
from mpesa_atm.operations import Role
from mpesa_atm.proxy.findings import Finding

__all__ = ["DIRECTION", "entries_shown", "record_of", "violations_shown"]

# The proxy's entries in the store's journal (the mocks' are "inbound" and "outbound").
DIRECTION = "proxy"


def record_of(
    role: Role,
    *,
    exchange_id: str,
    operation_id: str,
    url: str,
    request: bytes,
    status: int | None,
    upstream_status: int | None,
    answer: bytes,
    findings: Sequence[Finding],
    milliseconds: float,
    secrets: Secrets,
    fault: str | None = None,
    reproduce: str = "",
    request_object: dict[str, Any] | None = None,
    answer_object: dict[str, Any] | None = None,
) -> Any:
    """The journal's record of one exchange, passwords masked by name and by value. `status` None:
    the client got no status line (a connection fault); `fault`: the fault rule that applied, said;
    `reproduce`: the exchange's curl, kept when something was found (a few entries of many).
    `request_object`, `answer_object`: `request` and `answer` already parsed, when they are JSON
    objects (the proxy parsed them to judge them): kept from those rather than parsed again."""
    from mpesa_atm.mocks.records import JournalRecord

    kept = {
        "exchange_id": exchange_id,
        "upstream_status": upstream_status,
        "answer": _kept(answer, answer_object),
        "fault": fault,
        "violations": [
            {
                "check": f.check,
                "side": f.side,
                "severity": f.severity,
                "rule": f.rule,
                "title": f.title,
                "message": f.message,
                "exchange_ids": list(f.exchange_ids),
            }
            for f in findings
        ],
    }
    if findings:
        kept["reproduce"] = reproduce
    url, request_text, response_text = secrets.masked_all(
        url, _text(_kept(request, request_object)), _text(kept)
    )
    return JournalRecord(
        role=role,
        direction=DIRECTION,
        operation=operation_id,
        method="POST",
        url=url,
        status=status,
        request=request_text,
        response=response_text,
        duration_ms=round(milliseconds, 3),
    )


def _kept(raw: bytes, parsed: dict[str, Any] | None) -> Any:
    """A body as the journal keeps it (masking.masked_body), from its parsed object when there is one
    that json would have parsed alike: orjson reads an integer past 64 bits as a float, so a body with
    a number that is no int is parsed again as masked_body parses it (this API's fields are strings)."""
    if parsed is None:
        return masked_body(raw)
    try:
        if _has_float(parsed):
            return masked_body(raw)
        return masked(parsed)
    except RecursionError:  # as masked_body says it
        return masked_body(raw)


def _has_float(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return isinstance(value, float)


def _text(value: Any) -> str:
    """`value` as JSON text, as the journal writes its lines (mocks/journal.py's dumps)."""
    return dumps(value).decode()


def entries_shown(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """The proxy's entries among the store's (JournalEntry), newest first: each with what the client
    got (`status`, `response`), what the upstream answered (`upstream_status`), the violations and
    the fault rule that applied (`fault`, null when none did)."""
    shown = []
    for entry in entries:
        if entry.direction != DIRECTION:
            continue
        kept = entry.response if isinstance(entry.response, dict) else {}
        shown.append(
            {
                "id": entry.id,
                "exchange_id": kept.get("exchange_id"),
                "at": entry.at,
                "operation": entry.operation,
                "method": entry.method,
                "url": entry.url,
                "status": entry.status,
                "upstream_status": kept.get("upstream_status"),
                "request": masked(entry.request),
                "response": kept.get("answer"),
                "duration_ms": entry.duration_ms,
                "violations": kept.get("violations", []),
                "fault": kept.get("fault"),
            }
        )
    return shown


def violations_shown(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """The violations found in the proxy's entries among the store's (JournalEntry, newest first),
    newest first, each with the exchange it was found in: when, the operation, its curl."""
    shown = []
    for entry in entries:
        kept = entry.response if entry.direction == DIRECTION and isinstance(entry.response, dict) else {}
        for violation in reversed(kept.get("violations") or []):
            shown.append(
                {
                    "at": entry.at,
                    "exchange_ids": violation.get("exchange_ids", [kept.get("exchange_id")]),
                    "operation": entry.operation,
                    "side": violation.get("side"),
                    "check": violation.get("check"),
                    "rule": violation.get("rule"),
                    "severity": violation.get("severity"),
                    "title": violation.get("title"),
                    "message": violation.get("message", ""),
                    "reproduce": kept.get("reproduce", ""),
                }
            )
    return shown
