"""The document's rules that take more than the answer to check, as `@schemathesis.check` functions:
a replay, the same request with a wrong password or another shortcode, or without its optional field,
sent through the campaign's probe; and the answer a token's history calls for. Outside a campaign (no
probe) they skip.

The wrong-password and other-shortcode probes go out a bounded number of times per campaign
(`AuthProbes`): a real iPG locks a bank's account after a few failed logins.

A check returns True when it does not apply (schemathesis counts it as skipped), None when it passed.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

from mpesa_atm.codes import ResponseCode
from mpesa_atm.fuzz.answer_fields import description_contradiction, missing_output
from mpesa_atm.fuzz.context import Credentials, Probe, current_probe
from mpesa_atm.fuzz.violations import (
    answer_of,
    derived,
    describe,
    documented_code,
    excerpt,
    fail,
    is_refusal,
    is_valid_request,
    role_of,
    shown,
    steps,
    text,
)

__all__ = [
    "AUTH_PROBING",
    "AuthProbes",
    "optional_field_left_out",
    "other_shortcode_rejected",
    "replay_is_duplicate",
    "token_lifecycle",
    "unknown_token_paid",
    "wrong_password_rejected",
]

_SAMPLE_ACCOUNT_NUMBER = "85000001222840"  # the document's (3.1.2.2)


@schemathesis.check
def replay_is_duplicate(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A replay of a request answered 0 is -3 Duplicate carrying the first answer's reference."""
    probe = current_probe()
    role = role_of(case)
    answer = answer_of(response)
    if probe is None or role is None or text(answer, "output_ResponseCode") != ResponseCode.SUCCESS:
        return True
    key = "output_InsightReference" if role == "ipg" else "output_BankTransactionRef"
    first = text(answer, key)
    replay = derived(case, copy.deepcopy(case.body))
    again = probe.send(replay)
    second = answer_of(again)
    code = text(second, "output_ResponseCode")
    documented = (
        f"{documented_code(ResponseCode.DUPLICATE)} with the first answer's {key} {shown(first)}, the "
        "operation's duplicate check"
    )
    if code != ResponseCode.DUPLICATE:
        fail(
            "replay_is_duplicate",
            case,
            "A replay of a successful request is not answered Duplicate",
            f"{describe(code, second)} to the replay ({excerpt(again, 160)})",
            documented,
            *steps(probe, case, replay),
            rule="duplicate",
        )
    if text(second, key) != first:
        fail(
            "replay_is_duplicate",
            case,
            f"The Duplicate answer does not carry the first {key}",
            f"{key} {shown(text(second, key))} in the Duplicate answer",
            documented,
            *steps(probe, case, replay),
            rule="duplicate",
        )
    # The replay's answer is no case of its own, so no answer check reads it: a -3 that says "Success"
    # (the first answer copied with its code changed) is found here.
    _answer_of_probe("replay_is_duplicate", case, second, "The Duplicate answer", *steps(probe, case, replay))
    return None


CheckFunction = Callable[[CheckContext, Response, Case], bool | None]
# The budget of the check running in this thread; None (no bound) outside a campaign's bound checks.
_AUTH_PROBES: contextvars.ContextVar[AuthProbes | None] = contextvars.ContextVar(
    "mpesa_atm_auth_probes", default=None
)


class AuthProbes:
    """How many requests with a wrong password, and with another shortcode, a campaign may still send:
    at most `limit` of each, counted across the campaign's threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, check: str) -> bool:
        """Whether `check` may send one more probe (counted if so)."""
        with self._lock:
            if self.sent.get(check, 0) >= self.limit:
                return False
            self.sent[check] = self.sent.get(check, 0) + 1
            return True

    def bound(self, function: CheckFunction) -> CheckFunction:
        """`function` (a check of AUTH_PROBING) drawing its probes from this budget."""

        @functools.wraps(function)
        def check(ctx: CheckContext, response: Response, case: Case) -> bool | None:
            token = _AUTH_PROBES.set(self)
            try:
                return function(ctx, response, case)
            finally:
                _AUTH_PROBES.reset(token)

        return check


def _with_credentials(case: Case, probe: Probe) -> bool:
    credentials = probe.credentials
    body = case.body
    return (
        credentials is not None
        and isinstance(body, dict)
        and body.get("input_Username") == credentials.username
        and body.get("input_Password") == credentials.password
        and body.get("input_BankShortcode") == credentials.shortcode
    )


def _probe_with(
    check: str,
    case: Case,
    response: Response,
    field: str,
    value: Callable[[Credentials], str],
    expected: ResponseCode,
    *,
    title: str,
    received: str,
    documented: str,
) -> bool | None:
    """Sends a valid iPG request made with the campaign's credentials again with `field` set to
    `value(credentials)` and fails unless the answer is `expected`; skips (True) any other case.

    `received` may quote {answer} (the code and description) and {value}; `documented`, {expected}.
    The variant has a fresh input_ThirdPartyReference, so that it is no duplicate of the case.
    """
    probe = current_probe()
    if probe is None or not probe.probes_enabled or role_of(case) != "ipg" or not is_valid_request(case):
        return True
    if not _with_credentials(case, probe):
        return True
    if text(answer_of(response), "output_ResponseCode") in (None, ResponseCode.FAILURE):
        # The partner refused the request itself (its own formats may be stricter than ours): the
        # same request with a wrong password may well be refused for that reason first.
        return True
    budget = _AUTH_PROBES.get()
    if budget is not None and not budget.take(check):
        return True  # the campaign sent as many as --auth-probes allows
    assert probe.credentials is not None and isinstance(case.body, dict)
    changed = value(probe.credentials)
    # A new input_ThirdPartyReference, so that the iPG does not take the variant for a duplicate.
    body = {
        **case.body,
        field: changed,
        "input_ThirdPartyReference": probe.fresh("input_ThirdPartyReference"),
    }
    variant = derived(case, body)
    answer = answer_of(probe.send(variant))
    code = text(answer, "output_ResponseCode")
    if code != expected:
        fail(
            check,
            case,
            title,
            received.format(answer=describe(code, answer), value=shown(changed)),
            documented.format(expected=documented_code(expected)),
            *steps(probe, variant),
            rule="credentials",
        )
    # The refusal is no case of its own, so no answer check reads it: its fields and description here.
    _answer_of_probe(check, case, answer, f"The {expected.value} answer", *steps(probe, variant))
    return None


def _answer_of_probe(check: str, case: Case, answer: dict[str, Any] | None, which: str, *steps: str) -> None:
    """Fails `check` when the answer to one of its probes lacks a Required output field (or has one that
    is not a string), or says another code's description: the document's rules of every answer, which
    the answer checks apply only to the answers of the campaign's cases."""
    missing = missing_output(case, answer)
    if missing is not None:
        title, received, says = missing
        # "The answer lacks X" becomes "The -4 answer lacks X"
        title = which + title[len("The answer") :] if title.startswith("The answer") else f"{which}: {title}"
        fail(check, case, title, received, says, *steps, rule="required_output")
    contradiction = description_contradiction(answer)
    if contradiction is not None:
        title, received, says = contradiction
        fail(check, case, f"{which}: {title}", received, says, *steps, rule="code_description")


@schemathesis.check
def wrong_password_rejected(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: a valid request with a wrong password is -4 Authentication Failed."""
    return _probe_with(
        "wrong_password_rejected",
        case,
        response,
        "input_Password",
        Credentials.wrong_password,
        ResponseCode.AUTHENTICATION_FAILED,
        title="A request with a wrong password is not answered Authentication Failed",
        received="{answer} to the same request with input_Password {value}",
        documented="{expected}: Bank's username and password is incorrect",
    )


@schemathesis.check
def other_shortcode_rejected(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: the right credentials with a shortcode not linked to them is -5 Bank Details Invalid."""
    return _probe_with(
        "other_shortcode_rejected",
        case,
        response,
        "input_BankShortcode",
        Credentials.unlinked_shortcode,
        ResponseCode.BANK_DETAILS_INVALID,
        title="The right credentials with another shortcode are not answered Bank Details Invalid",
        received="{answer} with input_BankShortcode {value}",
        documented="{expected}: Bank shortcode does not match shortcode linked to username and password",
    )


# The checks whose probes fail a login; AuthProbes bounds them.
AUTH_PROBING = frozenset({"wrong_password_rejected", "other_shortcode_rejected"})


@schemathesis.check
def optional_field_left_out(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: a request without the optional input_AccountNumber is served as the same request with it:
    not refused, nor a server error, where the request with it is answered 0."""
    probe = current_probe()
    if (
        probe is None
        or not probe.probes_enabled
        or role_of(case) != "bank"
        or not isinstance(case.body, dict)
        or not is_valid_request(case)
    ):
        return True
    # The same request with and without the field, each with a TransactionID of its own (never the
    # case's, which may be a repeat, e.g. the document's sample BVA12369A): only a difference between
    # the two answers is blamed on leaving the field out.
    body = {k: v for k, v in case.body.items() if k != "input_AccountNumber"}
    account = case.body.get("input_AccountNumber", _SAMPLE_ACCOUNT_NUMBER)
    with_field = derived(
        case,
        {"input_AccountNumber": account, **body, "input_TransactionID": probe.fresh("input_TransactionID")},
    )
    with_response = probe.send(with_field)
    answered = text(answer_of(with_response), "output_ResponseCode")
    if answered != ResponseCode.SUCCESS or is_refusal(with_response) or with_response.status_code >= 500:
        return True  # refused with the field too (another reason): nothing to compare
    without = derived(case, {**body, "input_TransactionID": probe.fresh("input_TransactionID")})
    without_response = probe.send(without)
    answer = answer_of(without_response)
    if without_response.status_code >= 500:
        outcome = "caused a server error"
    elif is_refusal(without_response):
        outcome = "was refused"
    elif answer is None:
        outcome = "was not answered in the envelope"
    else:
        return None
    fail(
        "optional_field_left_out",
        case,
        f"Leaving out the optional input_AccountNumber {outcome}",
        f"{excerpt(without_response)} without input_AccountNumber; the same request with it "
        f"(input_AccountNumber {shown(account)}) was answered {describe('0', answer_of(with_response))}",
        "input_AccountNumber is String Optional: the same request without it is served, not refused "
        "and never a server error",
        *steps(probe, with_field, without),
        rule="optional_input",
    )


@schemathesis.check
def token_lifecycle(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Stateful run: the answer is the one the token's history calls for (paid once to its own details,
    within 2 days, reversed once with its TransactionID), judged by the expectation's rule: a failure
    where the document speaks, a warning where the harness reads it (which tokens may be reversed)."""
    probe = current_probe()
    expectation = probe.expectation if probe is not None else None
    if probe is None or expectation is None:
        return True
    answer = answer_of(response)
    code = text(answer, "output_ResponseCode")
    if not expectation.allows(code):
        fail(
            "token_lifecycle",
            case,
            expectation.title,
            describe(code, answer),
            expectation.documented,
            *steps(probe, case),
            severity=expectation.severity,
        )
    return None


@schemathesis.check
def unknown_token_paid(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: a redemption or reversal naming an input_BankTransactionRef nobody issued is never 0 Success."""
    probe = current_probe()
    if probe is None or not probe.unknown_token or not isinstance(case.body, dict):
        return True
    answer = answer_of(response)
    code = text(answer, "output_ResponseCode")
    if code == ResponseCode.SUCCESS:
        what = "reversal" if "input_TransactionID" in case.body else "redemption"
        reference = case.body.get("input_BankTransactionRef")
        fail(
            "unknown_token_paid",
            case,
            f"A {what} of a token nobody issued succeeded",
            f"{describe(code, answer)} to a {what} of input_BankTransactionRef {shown(reference)}, which no"
            " bank generated (a reference made up by the fuzzer)",
            f"not {documented_code(ResponseCode.SUCCESS)}: the incoming transaction is validated against"
            " the token generation transaction; none found is"
            f" {documented_code(ResponseCode.TRANSACTION_DETAILS_NOT_FOUND)}",
            *steps(probe, case),
            rule="unknown_token",
        )
    return None
