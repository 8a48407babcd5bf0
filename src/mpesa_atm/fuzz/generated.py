"""Phase: Schemathesis's own cases from the document, schema-valid (positive) or schema-invalid
(negative)."""

from __future__ import annotations

from typing import Literal

from schemathesis import Case, GenerationMode

from mpesa_atm.fuzz.unit import Unit

__all__ = ["run"]


def run(unit: Unit, operation_id: str, kind: Literal["positive", "negative"], examples: int) -> None:
    mode = GenerationMode.POSITIVE if kind == "positive" else GenerationMode.NEGATIVE
    strategy = unit.operations[operation_id].as_strategy(generation_mode=mode)

    def step(case: Case) -> None:
        unit.try_case(kind, case)

    with unit.phase_of(kind, examples):
        unit.explore(strategy, examples, step)
