"""Phase: token lifecycles against an iPG. Each lifecycle redeems, reverses and replays one token;
`expectations.expect` says what each answer must be. The tokens are a --tokens file's (real ones, each
spent on one lifecycle of a fixed plan), or, against a mock with the control API, made for each
lifecycle Hypothesis draws. Before them, one redemption and one reversal of a token nobody issued
(`unknown_token_paid`), whatever the target.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from schemathesis import Case

from mpesa_atm.fuzz.cases import Fresh, Lifecycle, draft_from, lifecycles, other_amount
from mpesa_atm.fuzz.checks import CheckInfo, Probe, probing
from mpesa_atm.fuzz.events import Note
from mpesa_atm.fuzz.expectations import Action, TokenState, advance, expect
from mpesa_atm.fuzz.target import response_code
from mpesa_atm.fuzz.tokens import Token
from mpesa_atm.fuzz.unit import Unit
from mpesa_atm.operations import CONTROL_PREFIX

__all__ = ["PLANS", "run"]

# Checks that send variants of a case: the lifecycle's own requests are not theirs to vary.
_PROBING_CHECKS = {"wrong_password_rejected", "other_shortcode_rejected", "optional_field_left_out"}

# What a real token goes through, the plans taken in turn: one token is paid, replayed, paid again and
# reversed twice; the next is reversed unredeemed. The other amount comes before the first redemption,
# while it could still be paid out.
PLANS: tuple[tuple[Action, ...], ...] = (
    ("redeem_other_amount", "redeem", "replay", "redeem", "reverse", "replay", "reverse", "redeem"),
    ("reverse", "replay", "reverse", "redeem", "redeem_other_amount"),
)


def run(unit: Unit, tokens: Sequence[Token] = ()) -> None:
    campaign = unit.campaign
    checks = tuple(info for info in campaign.checks if info.name not in _PROBING_CHECKS)
    _unknown_token(unit, checks)
    if tokens:
        _spend(unit, tokens, checks)
        return
    if not campaign.harness:
        return  # no tokens to spend, and no control API to make any (the campaign says so)
    made = _Tokens(unit)

    def lifecycle(life: Lifecycle) -> None:
        made_token = made.make(life)
        if made_token is not None:
            with probing(unit.probe(probes_enabled=False)) as probe:
                _lifecycle(unit, *made_token, life, probe, checks)

    unit.explore(lifecycles(campaign.currencies), campaign.max_examples, lifecycle)


def _unknown_token(unit: Unit, checks: Sequence[CheckInfo]) -> None:
    """A redemption and a reversal of a reference nobody issued (32 hex characters from the seed)."""
    campaign = unit.campaign
    fresh = Fresh(campaign.seed, "unknown tokens")
    draft = draft_from(random.Random(f"{campaign.seed}/unknown tokens"), campaign.currencies)
    for operation_id in ("token_redemption", "token_reversal"):
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


def _spend(unit: Unit, tokens: Sequence[Token], checks: Sequence[CheckInfo]) -> None:
    """One lifecycle per token of the file, each of PLANS in turn."""
    label = f"{unit.name} {unit.phase}"
    spent = 0
    for index, token in enumerate(tokens):
        if unit.stopped:
            break
        unit.history.clear()
        life = Lifecycle(token.msisdn, token.amount, token.currency, PLANS[index % len(PLANS)])
        with probing(unit.probe(probes_enabled=False)) as probe:
            _lifecycle(unit, token.bank_transaction_ref, token.transaction_id, life, probe, checks)
        spent += 1
        unit.campaign.collector.progress(label, spent, len(tokens))
    unit.emit(
        Note(
            f"stateful: {spent} of the {len(tokens)} tokens given were spent, one lifecycle each: they are"
            " redeemed or reversed now; make new withdrawals for the next run"
        )
    )


class _Tokens:
    """Makes each lifecycle's token: generated through the bank when the iPG mock can reach one, else
    seeded."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.withdrawals: bool | None = None  # whether the control API's withdrawals work; None: not tried

    def make(self, life: Lifecycle) -> tuple[str, str] | None:
        """The token's BankTransactionRef and TransactionID, or None when it could not be made."""
        unit = self.unit
        credentials = unit.campaign.target.credentials
        username = {"username": credentials.username} if credentials else {}
        details = {"msisdn": life.msisdn, "amount": life.amount, "currency": life.currency}
        if self.withdrawals is not False:
            status, body, curl = unit.control("/withdrawals", {**details, **username})
            if status == 201 and isinstance(body, dict):
                self.withdrawals = True
                unit.history.append(curl)
                return str(body["bank_transaction_ref"]), str(body["transaction_id"])
            if self.withdrawals is None:
                self.withdrawals = False
                unit.emit(
                    Note(
                        "stateful: the iPG mock could not have a bank generate tokens "
                        f"({CONTROL_PREFIX}/withdrawals answered {status}); tokens were seeded with "
                        f"{CONTROL_PREFIX}/tokens"
                    )
                )
        reference = unit.case_fresh("input_BankTransactionRef")
        transaction_id = unit.case_fresh("input_TransactionID")
        token = {"bank_transaction_ref": reference, "transaction_id": transaction_id, **details, **username}
        status, _, curl = unit.control("/tokens", token)
        if status != 201:
            return None
        unit.history.append(curl)
        return reference, transaction_id


def _lifecycle(
    unit: Unit,
    reference: str,
    transaction_id: str,
    life: Lifecycle,
    probe: Probe,
    checks: Sequence[CheckInfo],
) -> None:
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
    state = TokenState()
    last: tuple[Case, dict[str, str]] | None = None  # the last request that was not a replay
    for action in life.actions:
        if unit.stopped:
            break
        fresh_reference = {"input_ThirdPartyReference": unit.case_fresh("input_ThirdPartyReference")}
        if action == "replay":
            if last is None:
                continue
            previous, body = last
            case = previous.operation.Case(body=dict(body), media_type="application/json")
        elif action == "reverse":
            body = {**base, **fresh_reference, "input_TransactionID": transaction_id}
            case = reversal.Case(body=body, media_type="application/json")
        else:
            amount = life.amount if action == "redeem" else other_amount(life.amount)
            body = {**base, **fresh_reference, "input_Amount": amount}
            case = redemption.Case(body=body, media_type="application/json")
        probe.expectation = expect(action, state)
        unit.sent(action, case)
        response = unit.send(case)
        unit.check(case, response, checks)
        state = advance(state, action, response_code(response))
        unit.history.append(unit.reproduce(case))
        if action != "replay":
            last = (case, body)
    probe.expectation = None
