"""The compiled body validator accepts exactly what jsonschema accepts, for every schema it takes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from connexion.json_schema import Draft4ResponseValidator, Draft4Validator, resolve_refs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpesa_atm.mocks.validation import _passes, _portable, _RequestValidator
from mpesa_atm.spec import load_spec


def _body_schemas() -> list[tuple[str, dict[str, Any]]]:
    """(where, schema) of every JSON request and response body of the three specs."""
    found = []
    for name in ("bank.yaml", "ipg.yaml", "control.yaml"):
        document = resolve_refs(load_spec(name, role="ipg") if name == "control.yaml" else load_spec(name))
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if not isinstance(operation, dict):
                    continue
                request = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                if "schema" in request:
                    found.append((f"{name} {method} {path} request", request["schema"]))
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {}).get("application/json", {})
                    if "schema" in content:
                        found.append((f"{name} {method} {path} {status}", content["schema"]))
    return found


def _distinct(schemas: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Each schema once, named by where it first appears: the bodies share their schemas (every
    answer of an operation, the envelope of many), and a schema checked twice is checked for nothing."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for where, schema in schemas:
        seen.setdefault(json.dumps(schema, sort_keys=True), (where, schema))
    return list(seen.values())


SCHEMAS = _body_schemas()
COMPILED = [(where, schema) for where, schema in SCHEMAS if _portable(schema, top=True) is not None]
DISTINCT = _distinct(COMPILED)


def test_every_compiled_schema_is_checked_once() -> None:
    checked = [json.dumps(schema, sort_keys=True) for _, schema in DISTINCT]
    assert len(set(checked)) == len(checked)
    assert set(checked) == {json.dumps(schema, sort_keys=True) for _, schema in COMPILED}


def test_the_api_bodies_take_the_compiled_path() -> None:
    compiled = {where for where, _ in COMPILED}
    for operation in ("token-generation", "token-redemption", "token-reversal"):
        name = "bank.yaml" if operation == "token-generation" else "ipg.yaml"
        assert f"{name} post /{operation} request" in compiled
        assert f"{name} post /{operation} 200" in compiled


def test_schemas_with_keywords_it_does_not_know_stay_with_jsonschema() -> None:
    assert _portable({"type": "object", "properties": {"n": {"type": "integer"}}}) is None
    assert _portable({"type": "string", "nullable": True}) is None
    assert _portable({"type": "string", "format": "date-time"}) is None
    assert _portable({"$ref": "#/components/schemas/X"}) is None
    assert _portable({"type": "string", "format": "password", "pattern": "^a$"}) == {
        "type": "string",
        "pattern": "^a\\Z",
    }


def _jsonschema_accepts(schema: dict[str, Any], body: Any) -> bool:
    """The request validator's verdict (patterns as ECMA 262 reads them, like the compiled one).

    connexion's response validator reads `$` as Python does ("200\n" passes "^200$"): a response the
    compiled validator refuses goes to it, so what it must never do is accept more than that one."""
    accepted = _RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER).is_valid(body)
    if accepted:
        assert Draft4ResponseValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER).is_valid(body)
    return accepted


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values near what the schema allows: its examples and enum members, edited; and other types."""
    seeds: list[str] = [str(value) for value in schema.get("enum", [])[:20]]
    if "example" in schema:
        seeds.append(str(schema["example"]))
    near = st.sampled_from(seeds or ["0"]).flatmap(
        lambda seed: st.sampled_from(
            [
                seed,
                seed + "\n",
                seed + "x",
                seed[:-1],
                "",
                seed * 3,
                seed * 40,
                "\u0661" + seed,
                " " + seed,
                seed.upper(),
            ]
        )
    )
    printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=140)
    other = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(st.text())
    )
    return st.one_of(
        near,
        st.text(max_size=40),
        printable,  # around every minLength and maxLength
        st.from_regex(r"[0-9]{1,16}(\.[0-9]{1,3})?", fullmatch=True),
        st.from_regex(r"[A-Z]{3}|-?[0-9]", fullmatch=True),  # currencies and response codes
        other,
    )


def _bodies(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The schema's example body (from its fields' examples) with a field or two changed, dropped
    or added; and bodies of other types."""
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return st.one_of(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3), st.none())
    example = {name: str(sub["example"]) for name, sub in properties.items() if "example" in sub}
    names = sorted(properties)
    changes = st.dictionaries(st.sampled_from(names), st.none(), max_size=2).flatmap(
        lambda chosen: st.fixed_dictionaries({name: _values(properties[name]) for name in chosen})
    )
    dropped = st.sets(st.sampled_from(names), max_size=1)
    extra = st.dictionaries(st.sampled_from(["input_Other", "x", ""]), st.text(max_size=5), max_size=1)
    edited = st.builds(
        lambda changed, gone, more: {k: v for k, v in {**example, **changed}.items() if k not in gone} | more,
        changes,
        dropped,
        extra,
    )
    return st.one_of(edited, st.just([]), st.just("text"), st.none())


@pytest.mark.parametrize(("where", "schema"), DISTINCT, ids=[where for where, _ in DISTINCT])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_compiled_validator_agrees_with_jsonschema(where: str, schema: dict[str, Any], data: Any) -> None:
    body = data.draw(_bodies(schema))
    assert _passes(schema, body) == _jsonschema_accepts(schema, body), body


@pytest.mark.parametrize(
    "body",
    [
        {
            "input_CustomerMSISDN": "243843330333",
            "input_Amount": "200",
            "input_Currency": "CDF",
            "input_TransactionID": "1",
        },
    ],
)
def test_the_documents_token_generation_passes_both(body: dict[str, str]) -> None:
    schema = dict(SCHEMAS)["bank.yaml post /token-generation request"]
    assert _passes(schema, body)
    assert _jsonschema_accepts(schema, body)
    assert not _passes(schema, {**body, "input_Amount": "200\n"})
    assert not _jsonschema_accepts(schema, {**body, "input_Amount": "200\n"})
