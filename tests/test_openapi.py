"""The OpenAPI documents: valid, examples that fit their schemas, and codes that match the document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.spec import SPEC_FILES, load_spec, spec_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", SPEC_FILES)
def test_every_spec_file_passes_openapi_spec_validator(name: str) -> None:
    document, base_uri = read_from_filename(str(spec_path(name)))
    validate(document, base_uri=base_uri)


@pytest.mark.parametrize("name", ["ipg.yaml", "bank.yaml", "control.yaml"])
def test_bundled_spec_is_valid_and_self_contained(name: str) -> None:
    bundled = load_spec(name)
    validate(bundled)
    refs = re.findall(r"'\$ref': '([^']*)'", str(bundled))
    assert refs, "the documents use references"
    assert all(ref.startswith("#/") for ref in refs)


def _examples(document: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(where, schema, example value) for every example of a request or response body."""

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = document
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            node = target
        return node

    for path, item in document["paths"].items():
        for method, operation in item.items():
            bodies = []
            if "requestBody" in operation:
                bodies.append(("request", resolve(operation["requestBody"])))
            for status, response in operation.get("responses", {}).items():
                bodies.append((status, resolve(response)))
            for label, body in bodies:
                for media in body.get("content", {}).values():
                    where = f"{method.upper()} {path} {label}"
                    if "example" in media:
                        yield where, media["schema"], media["example"]
                    for name, example in media.get("examples", {}).items():
                        yield f"{where} {name}", media["schema"], resolve(example)["value"]


def _example_cases() -> list[Any]:
    cases = []
    for name in ("ipg.yaml", "bank.yaml", "control.yaml"):
        document = load_spec(name)
        for where, schema, value in _examples(document):
            cases.append(pytest.param(document, schema, value, id=f"{name} {where}"))
    return cases


@pytest.mark.parametrize(("document", "schema", "value"), _example_cases())
def test_every_example_validates_against_its_schema(document: Any, schema: Any, value: Any) -> None:
    # OpenAPI 3.0 schemas are JSON Schema draft 4 plus keywords a validator ignores; resolve $refs
    # against the whole bundled document.
    validator = jsonschema.Draft4Validator({**schema, "components": document["components"]})
    validator.validate(value)


def test_documented_examples_cover_success_failure_and_duplicate() -> None:
    for name, path in (
        ("ipg.yaml", "/token-redemption"),
        ("ipg.yaml", "/token-reversal"),
        ("bank.yaml", "/token-generation"),
    ):
        document = load_spec(name)
        response = document["paths"][path]["post"]["responses"]["200"]
        if "$ref" in response:
            response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        examples = response["content"]["application/json"]["examples"]
        assert {"success", "failure", "duplicate"} <= set(examples)


def test_response_code_enum_is_the_mapping_table() -> None:
    schema = load_spec("ipg.yaml")["components"]["schemas"]["ResponseCode"]
    assert schema["enum"] == [code.value for code in ResponseCode]
    rows = dict(re.findall(r"^\| (-?\d) +\| ([^|]+?) +\|", schema["description"], flags=re.MULTILINE))
    assert rows == {code.value: text for code, text in DESCRIPTIONS.items()}


def test_mapping_table_in_spec_notes_matches_the_codes() -> None:
    notes = (ROOT / "docs" / "spec-notes.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(-?\d)` \| ([^|]+?) \|", notes, flags=re.MULTILINE))
    assert rows == {code.value: text for code, text in DESCRIPTIONS.items()}


def test_document_field_notes_are_the_descriptions() -> None:
    common = yaml.safe_load(spec_path("common.yaml").read_text())["components"]["schemas"]
    assert common["Username"]["description"].startswith("The Banks username that is set up")
    assert "(Maximum 32 characters)" in common["BankTransactionRef"]["description"]
    assert "Format YYYYMMDD HH24MISS" in common["BankDateTime"]["description"]
