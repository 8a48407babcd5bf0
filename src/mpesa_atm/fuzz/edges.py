"""Phase: the refusals the document implies, sent once per operation before anything is generated."""

from __future__ import annotations

import json
from typing import Any

from schemathesis import Case

from mpesa_atm.fuzz.cases import Draft
from mpesa_atm.fuzz.realistic import realistic_case
from mpesa_atm.fuzz.unit import Unit

__all__ = ["run"]


def run(unit: Unit, operation_id: str) -> None:
    """No fields, not an object, not JSON, not sent as application/json; and a valid request with a
    newline after a field (the pattern's `$` of a validator that also matches before a final newline
    lets it through)."""
    campaign = unit.campaign
    valid = Draft("243843330333", "200", campaign.currencies[0], None, "exists")
    as_text = json.dumps(valid.body(operation_id, unit.case_fresh, campaign.target.credentials))
    edges: list[tuple[Any, str, str | None]] = [
        ({}, "application/json", None),
        ([], "application/json", None),
        (b"{not json", "application/json", None),
        (as_text, "text/plain", None),
        (None, "application/json", "input_CustomerMSISDN"),
        (None, "application/json", "input_Amount"),
    ]
    with unit.phase_of("edges", len(edges)):
        for body, media_type, newline_after in edges:
            if unit.stopped:
                return
            unit.history.clear()
            if newline_after is None:
                case: Case = unit.operations[operation_id].Case(body=body, media_type=media_type)
            else:
                case = realistic_case(unit, operation_id, valid, newline_after=newline_after)
            unit.try_case("edge", case)
