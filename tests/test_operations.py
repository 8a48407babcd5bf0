"""The table of roles and operations is the OpenAPI documents', and the CLI starts without the mocks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mpesa_atm import operations as table
from mpesa_atm.operations import CONTROL_PREFIX, ROLES, by_slug, operation, operations, operations_of
from mpesa_atm.spec import OPERATION_PATHS, read_document


def test_every_post_of_the_role_documents_is_in_the_table_with_its_role():
    for role in ROLES:
        document = read_document(f"{role}.yaml")
        ids = [item["post"]["operationId"] for item in document["paths"].values()]
        assert [op.id for op in operations_of(role)] == ids
    assert [op.id for op in operations_of("ipg")] == ["token_redemption", "token_reversal"]
    assert [op.id for op in operations_of("bank")] == ["token_generation"]


def test_an_operation_knows_its_path_section_and_control_api_name():
    reversal = operation("token_reversal")
    assert (reversal.role, reversal.path, reversal.section, reversal.slug) == (
        "ipg",
        "/token-reversal",
        "2.2",
        "token-reversal",
    )
    assert operation("token_generation").section == "3.1"
    assert {op.id: op.path for op in operations().values()} == OPERATION_PATHS


@pytest.mark.parametrize("name", ["token-redemption", "token_redemption"])
def test_either_spelling_names_the_operation(name):
    assert by_slug(name) is operation("token_redemption")


def test_an_unknown_name_is_none():
    assert by_slug("token-refund") is None
    with pytest.raises(KeyError):
        operation("token_refund")


def test_a_document_whose_operation_names_another_role_is_refused(monkeypatch):
    ipg = read_document("ipg.yaml")
    wrong = {
        **ipg,
        "paths": {"/x": {"post": {**ipg["paths"]["/token-reversal"]["post"], "x-mpesa-role": "bank"}}},
    }
    monkeypatch.setattr("mpesa_atm.spec.read_document", lambda name: wrong if name == "ipg.yaml" else ipg)
    table.operations.cache_clear()
    try:
        with pytest.raises(ValueError, match="must say x-mpesa-role: ipg"):
            table.operations()
    finally:
        table.operations.cache_clear()


def test_the_control_prefix_is_where_the_control_document_is_served():
    assert CONTROL_PREFIX == "/_harness"
    assert "/health" in read_document("control.yaml")["paths"]


def test_importing_the_cli_imports_neither_connexion_nor_the_mocks():
    probe = (
        "import sys, mpesa_atm.cli; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'connexion' or m.startswith('mpesa_atm.mocks')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
