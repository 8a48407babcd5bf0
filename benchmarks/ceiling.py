"""The load benchmark's ceilings: what a mock would serve if its handlers cost nothing.

`bank_ceiling` / `ipg_ceiling` (the ceiling, as the issue defines it): the mock's own connexion app
from `create_app` (the same spec, validation, middlewares, control API and error answers, under the
same workers) whose handlers answer a constant valid body without touching the store. In the worker
processes that serve it, every API call is answered `ANSWERS[operation]` where the fault layer would
start (no rules, no fault rules or modes, no store write) and no journal entry is written.

`bare_bank_ceiling` / `bare_ipg_ceiling` (`load.py --bare`): connexion alone with the role's spec and
the same validators, without the mock's middlewares (RequestJournal, RequestBody, ConnectionFaults)
and control API. It is the ceiling the benchmark used up to 2026-11-28, kept for comparison.

`benchmarks/load.py` serves them as `uvicorn ceiling:bank_ceiling --factory` (and so on) with the
mocks' workers and log settings.
"""

# ruff: noqa: I001  (mpesa_atm.mocks first: it silences a warning connexion gives when imported)
from __future__ import annotations

from typing import Any

import mpesa_atm.mocks  # noqa: F401
import connexion
from connexion.resolver import Resolver

from mpesa_atm.codes import ResponseCode, bank_answer, ipg_answer
from mpesa_atm.mocks import faults, request_journal
from mpesa_atm.mocks.app import create_app, frozen
from mpesa_atm.mocks.validation import VALIDATORS
from mpesa_atm.settings import load_settings
from mpesa_atm.spec import OPERATION_PATHS, Role, load_spec

__all__ = ["ANSWERS", "bank_ceiling", "bare_bank_ceiling", "bare_ipg_ceiling", "ceiling_app", "ipg_ceiling"]

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


def ceiling_app(role: Role) -> connexion.AsyncApp:
    """The mock of `role` configured from MPESA_ATM_* variables, its handlers made constant.

    It patches the mocks' classes in this process: build it only in a process that serves it."""

    async def constant(self: Any, operation: str, body: Any, scope: Any, process: Any) -> dict[str, str]:
        return ANSWERS[operation]

    async def unjournalled(self: Any, *args: Any) -> None:
        return None

    faults.Faults.run = constant  # type: ignore[method-assign]
    request_journal.RequestJournal._journal = unjournalled  # type: ignore[method-assign]
    return create_app(role, load_settings())


def bank_ceiling() -> connexion.AsyncApp:
    return frozen(ceiling_app("bank"))  # as the mocks' workers do


def ipg_ceiling() -> connexion.AsyncApp:
    return frozen(ceiling_app("ipg"))


def _bare_constant(operation_id: str) -> Any:
    answer = ANSWERS[operation_id]

    async def handler(body: dict[str, str]) -> tuple[dict[str, str], int]:
        return answer, 200

    return handler


def bare_app(role: Role) -> connexion.AsyncApp:
    spec: dict[str, Any] = load_spec(f"{role}.yaml")
    # At the paths the mocks serve by default, as create_app maps them.
    spec["paths"] = {OPERATION_PATHS[item["post"]["operationId"]]: item for item in spec["paths"].values()}
    app = connexion.AsyncApp(__name__)
    # The options create_app gives a mock's API (mocks/app.py), validation included.
    app.add_api(
        spec,
        name=role,
        resolver=Resolver(function_resolver=_bare_constant),
        strict_validation=True,
        validate_responses=True,
        validator_map=VALIDATORS,
    )
    return app


def bare_bank_ceiling() -> connexion.AsyncApp:
    return frozen(bare_app("bank"))


def bare_ipg_ceiling() -> connexion.AsyncApp:
    return frozen(bare_app("ipg"))
