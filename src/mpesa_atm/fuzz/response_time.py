"""The check of an operator's bound on how long an answer may take (`--max-response-time`): the document
says nothing of it, so it runs only in a campaign given that bound, and a slower answer is a failure."""

from __future__ import annotations

import functools
from collections.abc import Callable

from schemathesis import Case, CheckContext, Response

from mpesa_atm.fuzz.violations import fail

__all__ = ["response_time", "within"]

CheckFunction = Callable[[CheckContext, Response, Case], bool | None]


def response_time(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """An answer comes within the seconds the operator allows (--max-response-time); without that
    bound it skips."""
    return True


def within(limit: float) -> CheckFunction:
    """response_time, holding each answer to `limit` seconds (from the request sent to the answer's
    head, as requests times it)."""

    @functools.wraps(response_time)
    def check(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        if response.elapsed <= limit:
            return None
        fail(
            "response_time",
            case,
            f"The partner answered in {response.elapsed:.3f} s, over the {limit:g} s allowed",
            f"an answer after {response.elapsed:.3f} s (HTTP {response.status_code})",
            f"an answer within {limit:g} s",
            rule="response_time",
        )

    return check
