"""The answers the proxy makes itself, always in the role's envelope (codes.py): a 502 when the
upstream gave none (-7 when nothing reached it, -6 when it may have), --errors' 400 and 502 naming
the violation, and the 404, 405 and 413 the mocks answer alike. docs/proxy.md keeps their table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mpesa_atm.codes import ResponseCode, bank_answer, ipg_answer
from mpesa_atm.judgement import documented
from mpesa_atm.operations import Role
from mpesa_atm.proxy.findings import Finding
from mpesa_atm.proxy.forward import Unanswered
from mpesa_atm.settings import Settings

__all__ = ["JSON_HEADERS", "Envelopes", "Reply", "no_answer", "parsed", "text"]

JSON_HEADERS = (("content-type", "application/json"),)
_ECHOABLE = re.compile(r"^[!-~]{1,32}$")


def parsed(raw: bytes) -> dict[str, Any] | None:
    """A body's JSON object, or None when it is not one."""
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def text(body: dict[str, Any] | None, key: str) -> str | None:
    """A body's string field `key`, or None."""
    value = body.get(key) if body is not None else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Reply:
    """What the client is sent: the upstream's answer as it came, or one of the proxy's own."""

    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


class Envelopes:
    """The proxy's own answers as `role` answers: its envelope's fields, references of the proxy's
    own, the request's input_ThirdPartyReference echoed when it can be read."""

    def __init__(self, role: Role, settings: Settings) -> None:
        self.role = role
        self.settings = settings

    def envelope(self, code: ResponseCode, reason: str, request: bytes) -> dict[str, str]:
        from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref, new_insight_reference

        if self.role == "ipg":
            sent = text(parsed(request), "input_ThirdPartyReference") or ""
            return ipg_answer(
                code,
                insight_reference=new_insight_reference(),
                third_party_reference=sent if _ECHOABLE.match(sent) else "",
                reason=reason,
            )
        return bank_answer(
            code,
            bank_transaction_ref=new_bank_transaction_ref(),
            bank_date_time=bank_date_time(self.settings.clock(), self.settings.timezone),
            reason=reason,
        )

    def reply(self, status: int, code: ResponseCode, reason: str, request: bytes) -> Reply:
        return Reply(status, JSON_HEADERS, orjson.dumps(self.envelope(code, reason, request)))

    def refusal(self, status: int, findings: Sequence[Finding], request: bytes) -> Reply:
        """--errors: 400 (the client's request) or 502 (the upstream's answer), -1 Failure, naming the
        check that found what broke the document."""
        first = findings[0]
        whose = "the request" if status == 400 else "the upstream's answer"
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        reason = f"refused by the proxy: {whose} breaks {first.check}: {first.title}{more}"
        return self.reply(status, ResponseCode.FAILURE, reason, request)

    def unanswered(self, outcome: Unanswered, url: str, request: bytes) -> Reply:
        """No answer from the upstream: 502, -7 or -6 as forward.Unanswered says."""
        reason = f"the proxy got no answer from the upstream at {url}: {outcome.reason}"
        return self.reply(502, outcome.code, reason, request)


def no_answer(outcome: Unanswered, exchange_id: str) -> Finding:
    """The upstream gave no answer: not_a_server_error's finding, as fuzz records a partner that did not
    answer."""
    title = "The upstream did not answer" + (" in time" if outcome.timed_out else "")
    message = f"Received: no answer ({outcome.reason})\nDocumented: " + documented(
        "server_error", "a synchronous answer in the envelope"
    )
    return Finding("server_error", "not_a_server_error", "upstream", title, message, (exchange_id,))
