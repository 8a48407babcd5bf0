"""Telling a wrong target from a broken partner. A campaign pointed at the wrong URL, the wrong path or
the other role would otherwise report every check as failed; instead it stops and says what to check.

An answer says "wrong target" when it is a 404 or 405 (no such resource or method: no partner answers a
valid request so, and the mocks answer unknown paths so; but a 404 carrying -9 Transaction Details Not
Found is an iPG's own answer), a 401 or 403 outside the API's envelope (a
gateway refusing the call before the partner sees it), or the other role's answer (its output fields,
none of this role's). The first answers of an operation decide: once one answer looks right, the
operation is the role's, and later 404s are the partner's to explain (findings, not a stop).
"""

from __future__ import annotations

import functools
import threading

from schemathesis import Case, Response

from mpesa_atm.errors import WrongTarget
from mpesa_atm.fuzz.target import Target
from mpesa_atm.fuzz.violations import answer_of, operation_id_of
from mpesa_atm.operations import ROLES, Role, operations
from mpesa_atm.spec import load_spec

__all__ = ["WrongTargetWatch", "check_answer", "output_fields", "wrong_answer"]

# How many answers of an operation, all wrong-looking, stop the campaign (the edge cases come first,
# then realistic ones: a partner that answers all of these 404 has no such operation at that URL).
WRONG_AFTER = 6

_ENVELOPE = frozenset({"output_ResponseCode", "output_ResponseDesc"})


@functools.cache
def output_fields(role: Role) -> frozenset[str]:
    """The output fields of the role's answers, less the envelope's own (which both roles carry)."""
    document = load_spec(f"{role}.yaml")
    fields: set[str] = set()
    for schema in document["components"]["schemas"].values():
        fields.update(name for name in schema.get("properties", {}) if name.startswith("output_"))
    return frozenset(fields - _ENVELOPE)


def wrong_answer(role: Role, response: Response) -> str | None:
    """How the answer says the target is not `role`'s API, or None when it could be."""
    status = response.status_code
    answer = answer_of(response)
    if status in (404, 405):
        # An iPG may say "-9 Transaction Details Not Found" with a 404: the API's own answer.
        if answer is not None and answer.get("output_ResponseCode") == "-9":
            return None
        return f"HTTP {status}"
    if status in (401, 403) and (answer is None or "output_ResponseCode" not in answer):
        return f"HTTP {status} outside the API's envelope (a gateway refusing the call?)"
    if answer is not None:
        other = next(r for r in ROLES if r != role)
        theirs = sorted(set(answer) & output_fields(other) - output_fields(role))
        if theirs and not set(answer) & output_fields(role):
            return f"the {_NAMES[other]}'s answer ({', '.join(theirs)})"
    return None


_NAMES = {"ipg": "iPG", "bank": "bank"}


def _message(target: Target, case: Case, answered: str) -> str:
    return (
        f"{case.operation.label} at {target.label} was answered {answered}: "
        f"this is not the {_NAMES[target.role]}'s {operations()[operation_id_of(case)].summary} there"
    )


def check_answer(target: Target, case: Case, response: Response) -> None:
    """Raises WrongTarget when this one answer (to the campaign's first, valid request) says the target
    is not the role's API, or has no envelope at all."""
    answered = wrong_answer(target.role, response)
    if answered is None and answer_of(response) is None:
        answered = f"HTTP {response.status_code} without the API's JSON envelope"
    if answered is not None:
        raise WrongTarget(
            _message(target, case, answered), operation_id=operation_id_of(case), answered=answered
        )


class WrongTargetWatch:
    """Watches the first answers of each operation (of a unit, or of the campaign: it is thread-safe)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._wrong: dict[str, list[str]] = {}  # operation -> how its answers so far said "wrong"
        self._settled: set[str] = set()  # operations an answer showed to be the role's

    def answered(self, case: Case, response: Response) -> None:
        operation_id = operation_id_of(case)
        with self._lock:
            if operation_id in self._settled:
                return
            answered = wrong_answer(self.target.role, response)
            if answered is None:
                self._settled.add(operation_id)
                self._wrong.pop(operation_id, None)
                return
            seen = self._wrong.setdefault(operation_id, [])
            seen.append(answered)
            if len(seen) < WRONG_AFTER:
                return
        most = max(set(seen), key=seen.count)
        raise WrongTarget(
            _message(self.target, case, f"{most} ({len(seen)} of {len(seen)} requests)"),
            operation_id=operation_id,
            answered=most,
        )
