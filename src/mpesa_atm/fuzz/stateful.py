"""Phase: token lifecycles against an iPG. Each lifecycle redeems, reverses and replays one token, and
probes it: the right token with one of its MSISDN, amount and currency changed, with an
input_ThirdPartyReference over 32 characters, a reversal quoting another TransactionID; `expectations.
expect` says what each answer must be. The tokens are a --tokens file's (real ones, each spent on one
lifecycle of a fixed plan; one issued more than 2 days ago only on the redemption that must be -9), or,
against a mock with the control API, made for each lifecycle Hypothesis draws. Before them, one
redemption and one reversal of a token nobody issued (`unknown_token_paid`), whatever the target.

A lifecycle's reproducer makes a token of its own (the control API's withdrawal or seeded token, its
reference kept in the shell variables $ref and $tx) and quotes it, so that it reproduces on a fresh
partner; one of a --tokens file quotes the file's token, spent by then.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime

from schemathesis import Case

from mpesa_atm.fuzz.cases import (
    Fresh,
    Lifecycle,
    draft_from,
    lifecycles,
    long_reference,
    other_amount,
    other_currency,
    other_msisdn,
)
from mpesa_atm.fuzz.checks import CheckInfo, Probe, probing
from mpesa_atm.fuzz.curl import captured, made_up, with_variables
from mpesa_atm.fuzz.events import Note, Untested
from mpesa_atm.fuzz.expectations import Action, Standing, TokenState, advance, expect
from mpesa_atm.fuzz.target import response_code
from mpesa_atm.fuzz.tokens import Token, age_of, ignored_columns
from mpesa_atm.fuzz.unit import PhaseCount, Unit
from mpesa_atm.operations import CONTROL_PREFIX
from mpesa_atm.settings import utc_now

__all__ = ["EXPIRED_PLAN", "PLANS", "run"]

# Checks that send variants of a case: the lifecycle's own requests are not theirs to vary.
_PROBING_CHECKS = {"wrong_password_rejected", "other_shortcode_rejected", "optional_field_left_out"}

# What a real token goes through, the plans taken in turn. The first token is probed with each of its
# details changed and with a long reference while it could still be paid, then paid, replayed, paid
# again, reversed quoting another TransactionID, reversed twice and paid again; the next is reversed
# quoting another TransactionID while unredeemed, then reversed twice and paid. (An iPG that reverses
# only redeemed tokens, or only unredeemed ones, meets the TransactionID probe where it would reverse.)
PLANS: tuple[tuple[Action, ...], ...] = (
    (
        "redeem_other_msisdn",
        "redeem_other_amount",
        "redeem_other_currency",
        "redeem_long_reference",
        "redeem",
        "replay",
        "redeem",
        "reverse_other_transaction",
        "reverse",
        "replay",
        "reverse",
        "redeem",
    ),
    ("reverse_other_transaction", "reverse", "replay", "reverse", "redeem", "redeem_other_amount"),
)
# A token issued more than 2 days ago: one redemption with its own details, which must be -9. Nothing
# else is sent that could pay it.
EXPIRED_PLAN: tuple[Action, ...] = ("redeem",)
# The operations sent a token nobody issued, one case each.
_UNKNOWN_TOKEN = ("token_redemption", "token_reversal")


def run(unit: Unit, tokens: Sequence[Token] = (), now: Callable[[], datetime] = utc_now) -> None:
    """The phase: `tokens` (a --tokens file's) each spent on one lifecycle, their age judged at
    `now()`; without them, lifecycles of tokens made through the control API, if the target has one."""
    campaign = unit.campaign
    checks = tuple(info for info in campaign.checks if info.name not in _PROBING_CHECKS)
    with unit.phase_of("unknown token", len(_UNKNOWN_TOKEN)):
        _unknown_token(unit, checks)
    if tokens:
        _spend(unit, tokens, checks, now())
        return
    if not campaign.harness:
        return  # no tokens to spend, and no control API to make any (the campaign says so)
    made = _Tokens(unit)

    def lifecycle(life: Lifecycle) -> None:
        try:
            made_token = made.make(life)
            if made_token is not None:
                with probing(unit.probe(probes_enabled=False)) as probe:
                    _lifecycle(unit, *made_token, life, probe, checks)
        finally:
            unit.variables = {}
            if unit.counting is not None:
                unit.counting.lifecycles += 1

    with unit.phase_of("lifecycles", campaign.max_examples, counted="lifecycles"):
        unit.explore(lifecycles(campaign.currencies), campaign.max_examples, lifecycle)


def _unknown_token(unit: Unit, checks: Sequence[CheckInfo]) -> None:
    """A redemption and a reversal of a reference nobody issued (32 hex characters from the seed)."""
    campaign = unit.campaign
    fresh = Fresh(campaign.seed, "unknown tokens")
    draft = draft_from(random.Random(f"{campaign.seed}/unknown tokens"), campaign.currencies)
    for operation_id in _UNKNOWN_TOKEN:
        if unit.stopped:
            return
        unit.history.clear()
        body = draft.body(operation_id, fresh, campaign.target.credentials)
        case = unit.operations[operation_id].Case(body=body, media_type="application/json")
        with probing(unit.probe(probes_enabled=False)) as probe:
            probe.unknown_token = True
            unit.sent("unknown_token", case)
            unit.check(case, unit.send(case), checks)
    unit.history.clear()


def _spend(unit: Unit, tokens: Sequence[Token], checks: Sequence[CheckInfo], now: datetime) -> None:
    """One lifecycle per token of the file: each of PLANS in turn for the tokens within 2 days,
    EXPIRED_PLAN for those issued more than 2 days ago; none for a token issued about 2 days ago (the
    iPG's clock decides whether it is still found)."""
    ignored = ignored_columns(tokens)
    if ignored:
        unit.emit(Note(f"stateful: {ignored}"))
    lives: list[tuple[Token, tuple[Action, ...], Standing]] = []
    edge: list[Token] = []
    for token in tokens:
        age = age_of(token, now)
        if age == "expired":
            lives.append((token, EXPIRED_PLAN, "expired"))
        elif age == "edge":
            edge.append(token)
        else:
            plan = PLANS[sum(1 for _, _, standing in lives if standing == "listed") % len(PLANS)]
            lives.append((token, plan, "listed"))
    with unit.phase_of("lifecycles", len(lives), counted="lifecycles") as counting:
        spent, listed, unknown = _spend_each(unit, lives, checks, counting)
    _say_spent(unit, tokens, lives, spent, edge)
    if unit.stopped or not listed:
        return
    if len(unknown) == listed:
        unit.emit(Untested(_none_known(tokens, listed)))
    elif unknown:
        unit.emit(
            Note(
                f"stateful: {len(unknown)} of the {listed} tokens within 2 days are not known to the iPG"
                " (-9 to their first redemption), so their lifecycles tested little: "
                + ", ".join(map(_where, unknown))
            )
        )


def _spend_each(
    unit: Unit,
    lives: Sequence[tuple[Token, tuple[Action, ...], Standing]],
    checks: Sequence[CheckInfo],
    counting: PhaseCount,
) -> tuple[int, int, list[Token]]:
    """Runs the lifecycles of `lives` until the unit stops: how many tokens were spent, how many of
    those within 2 days, and those of them the iPG did not know."""
    spent = 0
    listed = 0
    unknown: list[Token] = []
    for token, plan, standing in lives:
        if unit.stopped:
            break
        unit.history.clear()
        life = Lifecycle(token.msisdn, token.amount, token.currency, plan)
        with probing(unit.probe(probes_enabled=False)) as probe:
            state = _lifecycle(
                unit, token.bank_transaction_ref, token.transaction_id, life, probe, checks, standing
            )
        spent += 1
        counting.lifecycles += 1
        if standing == "listed":
            listed += 1
            # Known: the iPG answered for it, or paid or reversed it (even after answering -9).
            if state.standing == "unknown" and not (state.redeemed or state.reversed):
                unknown.append(token)
    return spent, listed, unknown


def _say_spent(
    unit: Unit,
    tokens: Sequence[Token],
    lives: Sequence[tuple[Token, tuple[Action, ...], Standing]],
    spent: int,
    edge: Sequence[Token],
) -> None:
    """The notes of a --tokens file's lifecycles: the tokens spent, the expired ones, those not sent."""
    unit.emit(
        Note(
            f"stateful: {spent} of the {len(tokens)} tokens given were spent, one lifecycle each: they are"
            " redeemed or reversed now; make new withdrawals for the next run"
        )
    )
    expired = sum(1 for _, _, standing in lives[:spent] if standing == "expired")
    if expired:
        unit.emit(
            Note(
                f"stateful: {expired} of the tokens were issued more than 2 days ago (issued_at): each was"
                " sent one redemption with its own details, which must be -9 (token_window), and nothing else"
            )
        )
    if edge:
        unit.emit(
            Note(
                f"stateful: {len(edge)} of the tokens were issued about 2 days ago (within an hour of 48"
                " hours, by issued_at): whether the iPG still finds them depends on its clock, so they were"
                " not sent"
                f" ({', '.join(_where(token) for token in edge)})"
            )
        )


def _where(token: Token) -> str:
    return token.source or token.bank_transaction_ref


def _none_known(tokens: Sequence[Token], listed: int) -> str:
    source = tokens[0].source.rsplit(" line ", 1)[0] if tokens[0].source else "the tokens given (--tokens)"
    return (
        f"none of the {listed} tokens of {source} is known to the iPG: every redemption answered -9; are they"
        " from this iPG's sandbox, for this username, within 2 days?"
    )


class _Tokens:
    """Makes each lifecycle's token: generated through the bank when the iPG mock can reach one, else
    seeded. Says what happened, never more: a control API that refused is named with its answer."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.withdrawals: bool | None = None  # whether the control API's withdrawals work; None: not tried
        self.refused: int | None = None  # the status of the first withdrawal, when it was refused
        self.said: set[str] = set()  # the notes given

    def _note(self, key: str, text: str) -> None:
        if key not in self.said:
            self.said.add(key)
            self.unit.emit(Note(text))

    def make(self, life: Lifecycle) -> tuple[str, str] | None:
        """The token's BankTransactionRef and TransactionID, or None when it could not be made. The
        unit's history starts with the shell lines that make one alike, its variables ($ref, $tx) the
        reproducers quote."""
        unit = self.unit
        credentials = unit.campaign.target.credentials
        username = {"username": credentials.username} if credentials else {}
        details = {"msisdn": life.msisdn, "amount": life.amount, "currency": life.currency}
        withdrawals = f"{CONTROL_PREFIX}/withdrawals"
        if self.withdrawals is not False:
            status, body, curl = unit.control("/withdrawals", {**details, **username})
            if status == 201 and isinstance(body, dict):
                self.withdrawals = True
                reference, transaction_id = str(body["bank_transaction_ref"]), str(body["transaction_id"])
                unit.history.extend(captured(curl, {"ref": "bank_transaction_ref", "tx": "transaction_id"}))
                unit.variables = {"ref": reference, "tx": transaction_id}
                return reference, transaction_id
            if self.withdrawals is None:
                self.withdrawals = False
                self.refused = status
        reference = unit.case_fresh("input_BankTransactionRef")
        transaction_id = unit.case_fresh("input_TransactionID")
        token = {"bank_transaction_ref": reference, "transaction_id": transaction_id, **details, **username}
        status, _, curl = unit.control("/tokens", token)
        tried = f"{withdrawals} answered {self.refused}, " if self.refused is not None else ""
        if status != 201:
            self._note(
                f"refused {status}",
                f"stateful: the iPG mock made no token for a lifecycle: {tried}{CONTROL_PREFIX}/tokens"
                f" answered {status}; those lifecycles were not run",
            )
            return None
        if self.refused is not None:
            self._note(
                "seeded",
                "stateful: the iPG mock could not have a bank generate tokens "
                f"({withdrawals} answered {self.refused}); tokens were seeded with {CONTROL_PREFIX}/tokens",
            )
        variables = {"ref": reference, "tx": transaction_id}
        unit.history.extend(
            (made_up("ref", "reference"), made_up("tx", "transaction"), with_variables(curl, variables))
        )
        unit.variables = variables
        return reference, transaction_id


def _lifecycle(
    unit: Unit,
    reference: str,
    transaction_id: str,
    life: Lifecycle,
    probe: Probe,
    checks: Sequence[CheckInfo],
    standing: Standing = "valid",
) -> TokenState:
    """Sends `life`'s actions for the token, each answer checked against what its history calls for;
    returns what the answers say of the token."""
    credentials = unit.campaign.target.credentials
    assert credentials is not None
    redemption, reversal = unit.operations["token_redemption"], unit.operations["token_reversal"]
    base = {
        "input_Username": credentials.username,
        "input_Password": credentials.password,
        "input_CustomerMSISDN": life.msisdn,
        "input_Currency": life.currency,
        "input_BankShortcode": credentials.shortcode,
        "input_Amount": life.amount,
        "input_BankTransactionRef": reference,
    }
    state = TokenState(standing=standing)
    last: tuple[Case, dict[str, str]] | None = None  # the last request that was not a replay
    last_action: Action | None = None  # and its action
    for action in life.actions:
        if unit.stopped:
            break
        third_party = unit.case_fresh("input_ThirdPartyReference")
        if action == "redeem_long_reference":
            third_party = long_reference(third_party)
        fresh_reference = {"input_ThirdPartyReference": third_party}
        if action == "replay":
            if last is None:
                continue
            previous, body = last
            case = previous.operation.Case(body=dict(body), media_type="application/json")
        elif action in ("reverse", "reverse_other_transaction"):
            quoted = transaction_id if action == "reverse" else _other_transaction(unit, transaction_id)
            body = {**base, **fresh_reference, "input_TransactionID": quoted}
            case = reversal.Case(body=body, media_type="application/json")
        else:
            body = {**base, **fresh_reference, **_changed(action, life)}
            case = redemption.Case(body=body, media_type="application/json")
        replayed = last_action if action == "replay" else None
        probe.expectation = expect(action, state, replayed)
        unit.sent(action, case)
        response = unit.send(case)
        unit.check(case, response, checks)
        state = advance(state, action, response_code(response), replayed)
        unit.history.append(unit.reproduce(case))
        if action != "replay":
            last, last_action = (case, body), action
    probe.expectation = None
    return state


def _changed(action: Action, life: Lifecycle) -> dict[str, str]:
    """The one detail a redemption probe changes."""
    if action == "redeem_other_amount":
        return {"input_Amount": other_amount(life.amount)}
    if action == "redeem_other_msisdn":
        return {"input_CustomerMSISDN": other_msisdn(life.msisdn)}
    if action == "redeem_other_currency":
        return {"input_Currency": other_currency(life.currency)}
    return {}


def _other_transaction(unit: Unit, transaction_id: str) -> str:
    """A TransactionID in the token's shape that is not the token's."""
    other = unit.case_fresh("input_TransactionID")
    return other if other != transaction_id else unit.case_fresh("input_TransactionID")
