"""What the document says the answer to each step of a token's lifecycle must be, as pure functions the
stateful phase asks: `expect(action, state)` before a request, `advance(state, action, code)` after it.

Each expectation names the rule of `mpesa_atm.judgement` it holds the partner to: its severity (a
failure where the document speaks, a warning where the harness reads a silent point, such as which
tokens may be reversed) and the source its "Documented:" line ends with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from mpesa_atm.codes import ResponseCode
from mpesa_atm.judgement import RULES, Severity, documented

__all__ = [
    "ACTIONS",
    "OWN_DETAILS",
    "PROBES",
    "REDEMPTIONS",
    "Action",
    "Expectation",
    "Standing",
    "TokenState",
    "advance",
    "expect",
]

# What the stateful run does with a token: redeem it with its own details, reverse it, send the last
# request again unchanged, or one of the probes: a redemption with one of the token's details changed
# (its MSISDN, its amount, its currency), with an input_ThirdPartyReference over the document's 32
# characters, or a reversal quoting another input_TransactionID than the token's.
Action = Literal[
    "redeem",
    "reverse",
    "replay",
    "redeem_other_amount",
    "redeem_other_msisdn",
    "redeem_other_currency",
    "redeem_long_reference",
    "reverse_other_transaction",
]
ACTIONS: tuple[Action, ...] = get_args(Action)
# The actions that may pay the token out (a 0 to any of them spends it), and those that quote every
# detail of the token as it was generated.
REDEMPTIONS: frozenset[Action] = frozenset(
    {"redeem", "redeem_other_amount", "redeem_other_msisdn", "redeem_other_currency", "redeem_long_reference"}
)
OWN_DETAILS: frozenset[Action] = frozenset({"redeem", "reverse"})
# The probes: requests that must never be answered 0, whatever the token's history.
PROBES: frozenset[Action] = frozenset(ACTIONS) - OWN_DETAILS - {"replay"}

# valid: generated within the last 2 days, and the iPG knows it (it made it, or answered it);
# listed: given in a tokens file, not yet answered as known (the iPG may never have issued it);
# unknown: never generated, or the iPG answered -9 to its first redemption with its own details;
# expired: generated more than 2 days ago.
Standing = Literal["valid", "listed", "unknown", "expired"]

_SUCCESS = ResponseCode.SUCCESS.value
_NOT_FOUND_CODE = ResponseCode.TRANSACTION_DETAILS_NOT_FOUND.value


@dataclass(frozen=True)
class Expectation:
    """What the answer to one step must be: one of `codes` (when given) and none of `not_codes`, by
    `rule` (a name of judgement.RULES, which gives the severity and the source); `title` heads a finding,
    `text` says the rule in a finding's words."""

    codes: frozenset[str] = frozenset()
    not_codes: frozenset[str] = frozenset()
    rule: str = "token_once"
    text: str = ""
    title: str = "The answer does not fit the token's history"

    def allows(self, code: str | None) -> bool:
        """Whether an answer with this output_ResponseCode fits (None: the answer had none)."""
        if self.codes and code not in self.codes:
            return False
        return code not in self.not_codes

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity

    @property
    def documented(self) -> str:
        """The "Documented:" line of a finding: the rule's words and where they come from."""
        return documented(self.rule, self.text)


@dataclass(frozen=True)
class TokenState:
    """What the iPG's answers so far say about one token."""

    standing: Standing = "valid"
    redeemed: bool = False  # a redemption was answered 0: the token is paid out
    reversed: bool = False  # a reversal was answered 0
    last_code: str | None = None  # the answer to the last request that was not a replay, if any


def _one_of(codes: set[ResponseCode], rule: str, title: str, text: str) -> Expectation:
    return Expectation(codes=frozenset(code.value for code in codes), rule=rule, title=title, text=text)


def _not_paid(rule: str, title: str, text: str) -> Expectation:
    return Expectation(not_codes=frozenset({_SUCCESS}), rule=rule, title=title, text=text)


_FRESH = "0 Success: a token generated within 2 days, redeemed with its own details for the first time"
_FRESH_TOKEN = _one_of({ResponseCode.SUCCESS}, "token_redeemable", "A valid token was not paid", _FRESH)
# A token of a tokens file the iPG has not answered for yet: -9 says the iPG does not know it (the
# campaign notes it, and says so when it knew none), anything else that is not 0 is a refusal.
_LISTED_TOKEN = _one_of(
    {ResponseCode.SUCCESS, ResponseCode.TRANSACTION_DETAILS_NOT_FOUND},
    "token_redeemable",
    "A valid token was not paid",
    _FRESH + " (-9 if the iPG never issued it)",
)
_REDEEMED_ONCE = _not_paid(
    "token_once",
    "A token was paid twice, or after it was reversed",
    "not 0: a token is redeemed at most once, and never after it was reversed",
)
_REVERSED_ONCE = _not_paid(
    "token_once", "A token was reversed twice", "not 0: a token is reversed at most once"
)
_REVERSE_FIRST = _one_of(
    {ResponseCode.SUCCESS},
    "reversible_tokens",
    "The first reversal of a token was refused",
    "0 Success: the first reversal of a token, redeemed or not, with its G2 TransactionID",
)
_DETAILS_MATCH = {
    action: _not_paid(
        "token_details",
        f"A token was paid for another {what} than it was generated for",
        f"not 0: the {what} (input_{field}) must match the token generation transaction",
    )
    for action, (what, field) in {
        "redeem_other_amount": ("amount", "Amount"),
        "redeem_other_msisdn": ("MSISDN", "CustomerMSISDN"),
        "redeem_other_currency": ("currency", "Currency"),
    }.items()
}
_LONG_REFERENCE = _not_paid(
    "stated_limit",
    "A redemption with an input_ThirdPartyReference over 32 characters was paid",
    "not 0: input_ThirdPartyReference has a Maximum of 32 characters",
)
_OTHER_TRANSACTION = _not_paid(
    "reversal_transaction",
    "A reversal quoting another input_TransactionID than the token's succeeded",
    "not 0: a reversal's input_TransactionID is the token's original G2 TransactionID",
)
_DUPLICATE = _one_of(
    {ResponseCode.DUPLICATE},
    "duplicate",
    "A replay of a request answered 0 is not a duplicate",
    "-3 Duplicate: the same request again (the duplicate check)",
)
_NOT_FOUND = "-9 Transaction Details Not Found: "
_UNKNOWN = _one_of(
    {ResponseCode.TRANSACTION_DETAILS_NOT_FOUND},
    "unknown_token",
    "A token the iPG did not know was answered otherwise",
    _NOT_FOUND + "the iPG answered -9 to this token's first redemption: no token generated with this "
    "input_BankTransactionRef within the last 2 days",
)
_UNKNOWN_PROBE = _not_paid(
    "unknown_token",
    "A token the iPG did not know was paid or reversed",
    "not 0: the iPG answered -9 to this token's first redemption: not found within the last 2 days",
)
_EXPIRED = _one_of(
    {ResponseCode.TRANSACTION_DETAILS_NOT_FOUND},
    "token_window",
    "A token generated more than 2 days ago was not answered Not Found",
    _NOT_FOUND + "a transaction is looked up within the last 2 days; a token generated more than 48 "
    "hours ago is never paid",
)
_EXPIRED_PROBE = _not_paid(
    "token_window",
    "A token generated more than 2 days ago was paid",
    "not 0: a token generated more than 2 days (48 hours) ago is not found (-9) and never paid",
)


def expect(action: Action, state: TokenState, replayed: Action | None = None) -> Expectation | None:
    """What the answer to `action` must be in `state`; None where the document leaves it open (the
    replay of a request that was not answered 0, which a partner may take for a new one). `replayed` is
    the action a replay sends again: for a token not found (unknown or expired), its replay is held to
    what the request itself was."""
    if action == "replay":
        if state.last_code == _SUCCESS:
            return _DUPLICATE
        if replayed is not None and replayed != "replay" and state.standing in ("unknown", "expired"):
            return expect(replayed, state)
        return None
    if state.standing in ("unknown", "expired"):
        unknown = state.standing == "unknown"
        if action in OWN_DETAILS:
            return _UNKNOWN if unknown else _EXPIRED
        # Which check comes first, the details or the token's age, is the partner's (row 24): any
        # refusal will do, never 0.
        return _UNKNOWN_PROBE if unknown else _EXPIRED_PROBE
    if action == "reverse_other_transaction":
        return _OTHER_TRANSACTION
    if action == "redeem_long_reference":
        return _LONG_REFERENCE
    if action in _DETAILS_MATCH:
        return _DETAILS_MATCH[action]
    if action == "reverse":
        return _REVERSED_ONCE if state.reversed else _REVERSE_FIRST
    if state.redeemed or state.reversed:
        return _REDEEMED_ONCE
    return _LISTED_TOKEN if state.standing == "listed" else _FRESH_TOKEN


def advance(
    state: TokenState, action: Action, code: str | None, replayed: Action | None = None
) -> TokenState:
    """The state once `action` was answered `code` (None: an answer without one). A replay changes
    nothing (it is the same request again), unless a request that was not answered 0 is answered 0 when
    replayed: then `replayed`, the action it sends again, was done. A 0 to any redemption pays the token
    out, probes included; a listed token becomes valid once the iPG answers for it, unknown when it
    answers -9 to its first redemption with its own details."""
    if action == "replay":
        if code == _SUCCESS and state.last_code != _SUCCESS and replayed not in (None, "replay"):
            assert replayed is not None
            moved = advance(state, replayed, code)
            return dataclasses.replace(moved, last_code=state.last_code)
        return state
    standing = state.standing
    if standing == "listed":
        unused = not (state.redeemed or state.reversed)
        if action == "redeem" and code == _NOT_FOUND_CODE and unused:
            standing = "unknown"
        elif code == _SUCCESS or (action in OWN_DETAILS and code not in (None, _NOT_FOUND_CODE)):
            standing = "valid"
    return dataclasses.replace(
        state,
        standing=standing,
        redeemed=state.redeemed or (action in REDEMPTIONS and code == _SUCCESS),
        reversed=state.reversed or (action in ("reverse", "reverse_other_transaction") and code == _SUCCESS),
        last_code=code,
    )
