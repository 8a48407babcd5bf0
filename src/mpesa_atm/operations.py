"""The API's roles and operations, read once from the OpenAPI documents, and the control API's prefix.

Each operation of `openapi/ipg.yaml` and `openapi/bank.yaml` names the role that implements it
(`x-mpesa-role`) and the document section it transcribes (`x-mpesa-section`); its operationId and
path are the harness's names for it. Everything that asks "which operations does the iPG serve" or
"which role serves Token Reversal" asks this module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "CONTROL_PREFIX",
    "ROLES",
    "Operation",
    "Role",
    "by_slug",
    "operation",
    "operations",
    "operations_of",
]

Role = Literal["ipg", "bank"]
ROLES: tuple[Role, ...] = get_args(Role)

# Where both mocks serve their control API (openapi/control.yaml): health, reset, journal, faults...
CONTROL_PREFIX = "/_harness"

_DOCUMENTS: dict[Role, str] = {"ipg": "ipg.yaml", "bank": "bank.yaml"}


@dataclass(frozen=True)
class Operation:
    id: str  # the operationId, e.g. "token_redemption"
    role: Role  # the side that implements it
    path: str  # where the harness serves it (the document says "TBD")
    section: str  # the document's section, e.g. "2.1"
    summary: str

    @property
    def slug(self) -> str:
        """The path's spelling, "token-redemption": the control API takes it beside the id."""
        return self.id.replace("_", "-")


@functools.cache
def operations() -> dict[str, Operation]:
    """Every API operation by operationId, in the documents' order (the iPG's first)."""
    from mpesa_atm.spec import read_document  # spec imports this module's Role

    table: dict[str, Operation] = {}
    for role, name in _DOCUMENTS.items():
        for path, item in read_document(name)["paths"].items():
            for method, op in item.items():
                if method != "post":
                    raise ValueError(f"{name}: {method.upper()} {path}: the API's operations are POSTs")
                if op.get("x-mpesa-role") != role:
                    raise ValueError(f"{name}: {op['operationId']} must say x-mpesa-role: {role}")
                table[op["operationId"]] = Operation(
                    id=op["operationId"],
                    role=role,
                    path=path,
                    section=str(op["x-mpesa-section"]),
                    summary=op["summary"],
                )
    return table


def operation(operation_id: str) -> Operation:
    """The operation named `operation_id`; KeyError for another name."""
    return operations()[operation_id]


def operations_of(role: Role) -> tuple[Operation, ...]:
    """The operations `role` implements, in the document's order."""
    return tuple(op for op in operations().values() if op.role == role)


def by_slug(slug: str) -> Operation | None:
    """The operation a control-API name ("token-redemption") or an operationId names, or None."""
    return operations().get(slug.replace("-", "_"))
