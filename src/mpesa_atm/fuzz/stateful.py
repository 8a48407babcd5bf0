"""Phase: token lifecycles against an iPG mock with the control API. Each lifecycle makes a token, then
redeems, reverses and replays it as Hypothesis draws; `expectations.expect` says what each answer must be.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemathesis import Case

from mpesa_atm.fuzz.cases import Lifecycle, lifecycles, other_amount
from mpesa_atm.fuzz.checks import CheckInfo, Probe, probing
from mpesa_atm.fuzz.events import Note
from mpesa_atm.fuzz.expectations import TokenState, advance, expect
from mpesa_atm.fuzz.target import response_code
from mpesa_atm.fuzz.unit import Unit
from mpesa_atm.operations import CONTROL_PREFIX

__all__ = ["run"]

# Checks that send variants of a case: the lifecycle's own requests are not theirs to vary.
_PROBING_CHECKS = {"wrong_password_rejected", "other_shortcode_rejected", "optional_field_left_out"}


def run(unit: Unit) -> None:
    campaign = unit.campaign
    checks = tuple(info for info in campaign.checks if info.name not in _PROBING_CHECKS)
    tokens = _Tokens(unit)

    def lifecycle(life: Lifecycle) -> None:
        with probing(unit.probe(probes_enabled=False)) as probe:
            _lifecycle(unit, tokens, life, probe, checks)

    unit.explore(lifecycles(campaign.currencies), campaign.max_examples, lifecycle)


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
    unit: Unit, tokens: _Tokens, life: Lifecycle, probe: Probe, checks: Sequence[CheckInfo]
) -> None:
    credentials = unit.campaign.target.credentials
    assert credentials is not None
    made = tokens.make(life)
    if made is None:
        return
    reference, transaction_id = made
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
