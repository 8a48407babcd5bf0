"""The load benchmark's ceiling: each mock's connexion app and spec with the same validation, whose
handlers return a constant valid answer without touching the store.

`benchmarks/load.py` serves it as `uvicorn ceiling:bank_ceiling --factory` (or `ipg_ceiling`) with
the mocks' workers and log settings; what a mock serves below this rate is the cost of its rules,
store, journal and faults.
"""

# ruff: noqa: I001  (mpesa_atm.mocks first: it silences a warning connexion gives when imported)
from __future__ import annotations

from typing import Any

import mpesa_atm.mocks  # noqa: F401
import connexion
from connexion.resolver import Resolver

from mpesa_atm.codes import ResponseCode, bank_answer, ipg_answer
from mpesa_atm.mocks.app import served
from mpesa_atm.mocks.validation import VALIDATORS
from mpesa_atm.spec import OPERATION_PATHS, Role, load_spec

__all__ = ["ANSWERS", "bank_ceiling", "ceiling_app", "ipg_ceiling"]

ANSWERS = {
    "token_generation": bank_answer(
        ResponseCode.SUCCESS,
        bank_transaction_ref="12345678123412341234123456789abc",
        bank_date_time="20190611 223210",
    ),
    "token_redemption": ipg_answer(
        ResponseCode.SUCCESS,
        insight_reference="12sdxq3634dadsas242",
        third_party_reference="71c6d1f93910052de053",
    ),
    "token_reversal": ipg_answer(
        ResponseCode.SUCCESS,
        insight_reference="12sdxq3634dadsas242",
        third_party_reference="71c6d1f93910052de053",
    ),
}


def _constant(operation_id: str) -> Any:
    answer = ANSWERS[operation_id]

    async def handler(body: dict[str, str]) -> tuple[dict[str, str], int]:
        return answer, 200

    return handler


def ceiling_app(role: Role) -> connexion.AsyncApp:
    spec: dict[str, Any] = load_spec(f"{role}.yaml")
    # At the paths the mocks serve by default, as create_app maps them.
    spec["paths"] = {OPERATION_PATHS[item["post"]["operationId"]]: item for item in spec["paths"].values()}
    app = connexion.AsyncApp(__name__)
    # The options create_app gives a mock's API (mocks/app.py), validation included.
    app.add_api(
        spec,
        name=role,
        resolver=Resolver(function_resolver=_constant),
        strict_validation=True,
        validate_responses=True,
        validator_map=VALIDATORS,
    )
    return app


def bank_ceiling() -> connexion.AsyncApp:
    return served(ceiling_app("bank"))  # as the mocks' workers do


def ipg_ceiling() -> connexion.AsyncApp:
    return served(ceiling_app("ipg"))
