"""What the document says the answer to each step of a token's lifecycle must be, as pure functions the
stateful phase asks: `expect(action, state)` before a request, `advance(state, action, code)` after it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from mpesa_atm.codes import ResponseCode

__all__ = ["ACTIONS", "Action", "Expectation", "Standing", "TokenState", "advance", "expect"]

# What the stateful run does with a token: redeem it with its own details, reverse it, send the last
# request again unchanged, or redeem it for another amount.
Action = Literal["redeem", "reverse", "replay", "redeem_other_amount"]
ACTIONS: tuple[Action, ...] = get_args(Action)
# valid: generated within the last 2 days; unknown: never generated; expired: generated before that.
Standing = Literal["valid", "unknown", "expired"]

_SUCCESS = ResponseCode.SUCCESS.value


@dataclass(frozen=True)
class Expectation:
    """What the answer to one step must be: one of `codes` (when given) and none of `not_codes`."""

    codes: frozenset[str] = frozenset()
    not_codes: frozenset[str] = frozenset()
    documented: str = ""  # the rule, as a finding quotes it

    def allows(self, code: str | None) -> bool:
        """Whether an answer with this output_ResponseCode fits (None: the answer had none)."""
        if self.codes and code not in self.codes:
            return False
        return code not in self.not_codes


@dataclass(frozen=True)
class TokenState:
    """What the iPG's answers so far say about one token."""

    standing: Standing = "valid"
    redeemed: bool = False  # a redemption with the token's own details was answered 0
    reversed: bool = False  # a reversal was answered 0
    last_code: str | None = None  # the answer to the last request that was not a replay, if any


def _one_of(code: ResponseCode, documented: str) -> Expectation:
    return Expectation(codes=frozenset({code.value}), documented=documented)


def _not(code: ResponseCode, documented: str) -> Expectation:
    return Expectation(not_codes=frozenset({code.value}), documented=documented)


_FRESH_TOKEN = _one_of(
    ResponseCode.SUCCESS,
    "0 Success: a token generated within 2 days, redeemed with its own details for the first time",
)
_REDEEMED_ONCE = _not(
    ResponseCode.SUCCESS, "not 0: a token is redeemed at most once, and never after it was reversed"
)
_REVERSED_ONCE = _not(ResponseCode.SUCCESS, "not 0: a token is reversed at most once")
_REVERSE_REDEEMED = _one_of(
    ResponseCode.SUCCESS, "0 Success: the first reversal of a redeemed token, with its G2 TransactionID"
)
_DETAILS_MATCH = _not(
    ResponseCode.SUCCESS, "not 0: the amount must match the token generation transaction (2.1.2.1)"
)
_DUPLICATE = _one_of(
    ResponseCode.DUPLICATE, "-3 Duplicate: the same request again (2.1, 2.2 duplicate check)"
)
_NOT_FOUND = _one_of(
    ResponseCode.TRANSACTION_DETAILS_NOT_FOUND,
    "-9 Transaction Details Not Found: no token generated with this input_BankTransactionRef "
    "within the last 2 days (section 4)",
)


def expect(action: Action, state: TokenState) -> Expectation | None:
    """What the answer to `action` must be in `state`; None where the document leaves it open (the
    replay of a request that was not answered 0, the reversal of a token never redeemed)."""
    if action == "replay":
        return _DUPLICATE if state.last_code == _SUCCESS else None
    if state.standing != "valid":
        return _NOT_FOUND
    if action == "reverse":
        if state.reversed:
            return _REVERSED_ONCE
        return _REVERSE_REDEEMED if state.redeemed else None
    if action == "redeem_other_amount":
        return _DETAILS_MATCH
    if state.redeemed or state.reversed:
        return _REDEEMED_ONCE
    return _FRESH_TOKEN


def advance(state: TokenState, action: Action, code: str | None) -> TokenState:
    """The state once `action` was answered `code` (None: an answer without one). A replay changes
    nothing: it is the same request again."""
    if action == "replay":
        return state
    return dataclasses.replace(
        state,
        redeemed=state.redeemed or (action == "redeem" and code == _SUCCESS),
        reversed=state.reversed or (action == "reverse" and code == _SUCCESS),
        last_code=code,
    )
