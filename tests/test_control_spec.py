"""control.yaml as each role's mock serves it: only that role's operations, bounded numbers, every
answer documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate

from mpesa_atm.operations import ROLES, Role, operations, operations_of
from mpesa_atm.spec import load_spec, read_document

OTHER: dict[Role, Role] = {"ipg": "bank", "bank": "ipg"}


def _schemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "type" in node and isinstance(node["type"], str):
            yield where, node
        for key, value in node.items():
            yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{where}/{index}")


def _names(role: Role) -> set[str]:
    return {name for op in operations_of(role) for name in (op.id, op.slug)}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_serves_a_valid_document_of_its_own_operations(role: Role) -> None:
    document = load_spec("control.yaml", role=role)
    validate(document)
    rule = document["components"]["schemas"]["FaultRule"]
    assert set(rule["properties"]["operation"]["enum"]) == _names(role)
    examples = document["paths"]["/faults"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert {example["value"]["operation"] for example in examples.values()} <= _names(role)
    marked = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if op.get("x-mpesa-role") == OTHER[role]
    ]
    assert marked == []


def test_the_bank_document_has_no_ipg_only_operation_nor_component() -> None:
    bank = load_spec("control.yaml", role="bank")
    assert not {"/tokens", "/withdrawals"} & set(bank["paths"])
    assert not {"UnknownBank"} & set(bank["components"]["responses"])
    assert not {"Token", "TransactionID", "AccountNumber"} & set(bank["components"]["schemas"])
    ipg = load_spec("control.yaml", role="ipg")
    assert not {"/redemptions", "/reversals"} & set(ipg["paths"])
    assert not {"DriveRequest"} & set(ipg["components"]["schemas"])
    assert not {"IpgCalled", "UnknownToken"} & set(ipg["components"]["responses"])


def test_the_journal_filter_names_every_operation_in_either_spelling() -> None:
    """Both mocks' journals hold all three operations: those served and those their drivers sent."""
    every = {name for op in operations().values() for name in (op.id, op.slug)}
    for role in ROLES:
        document = load_spec("control.yaml", role=role)
        parameters = document["paths"]["/journal"]["get"]["parameters"]
        (parameter,) = [p for p in parameters if p["name"] == "operation"]
        assert parameter["schema"] == {"$ref": "#/components/schemas/OperationName"}
        assert set(document["components"]["schemas"]["OperationName"]["enum"]) == every


def test_every_integer_of_the_control_api_is_bounded() -> None:
    """SQLite holds 64 bits: a bound keeps a larger number a 400, never an overflow (500)."""
    schemas = _schemas(read_document("control.yaml"))
    integers = [(where, schema) for where, schema in schemas if schema["type"] == "integer"]
    assert integers
    unbounded = [where for where, schema in integers if not {"minimum", "maximum"} <= set(schema)]
    assert unbounded == []
    assert all(schema["maximum"] < 2**63 for _, schema in integers)


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_documents_400_and_a_body_operation_415(role: Role) -> None:
    """strict_validation refuses an unknown query parameter of any operation; a body that is not
    JSON is a 415."""
    for path, item in load_spec("control.yaml", role=role)["paths"].items():
        for method, op in item.items():
            assert "400" in op["responses"], f"{method.upper()} {path}"
            if "requestBody" in op:
                assert "415" in op["responses"], f"{method.upper()} {path}"
