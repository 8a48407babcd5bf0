"""Phase: realistic valid requests (cases.drafts), the ones a strict partner answers with a business
outcome. Against a harness mock, the token a redemption or reversal names is made first."""

from __future__ import annotations

from collections.abc import Mapping

from schemathesis import Case

from mpesa_atm.fuzz.cases import Draft, drafts, other_amount
from mpesa_atm.fuzz.unit import Unit
from mpesa_atm.operations import operation

__all__ = ["realistic_case", "run"]


def run(unit: Unit, operation_id: str, examples: int) -> None:
    with unit.phase_of("realistic", examples):
        unit.explore(
            drafts(unit.campaign.currencies),
            examples,
            lambda draft: unit.try_case("realistic", realistic_case(unit, operation_id, draft)),
        )


def realistic_case(
    unit: Unit,
    operation_id: str,
    draft: Draft,
    newline_after: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Case:
    """The case of `draft`, with fresh references; `overrides` sets fields to given values (the token a
    redemption names is made with them); `newline_after` names a field to end with a newline."""
    campaign = unit.campaign
    credentials = campaign.target.credentials
    body = {**draft.body(operation_id, unit.case_fresh, credentials), **(overrides or {})}
    if operation(operation_id).role == "ipg" and campaign.harness and draft.token != "unknown":
        amount = body["input_Amount"] if draft.token == "exists" else other_amount(body["input_Amount"])
        token = {
            "bank_transaction_ref": body["input_BankTransactionRef"],
            "transaction_id": body.get("input_TransactionID") or unit.case_fresh("input_TransactionID"),
            "msisdn": body["input_CustomerMSISDN"],
            "amount": amount,
            "currency": body["input_Currency"],
        }
        if credentials is not None:
            token["username"] = credentials.username
        status, _, curl = unit.control("/tokens", token)
        if status == 201:  # a 409 (already there) or 400 (unknown bank) leaves the token unknown
            unit.history.append(curl)
    if newline_after is not None:
        body[newline_after] += "\n"
    case: Case = unit.operations[operation_id].Case(body=body, media_type="application/json")
    return case
