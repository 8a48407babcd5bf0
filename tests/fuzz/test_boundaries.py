"""Boundary values: every field's documented edges go out, valid and realistic, in every campaign."""

from __future__ import annotations

import contextlib
import json
import random
import re

import jsonschema
import pytest

from mpesa_atm.fuzz import Target, render_finding, run_campaign
from mpesa_atm.fuzz.boundaries import CREDENTIAL_FIELDS, field_edges, parse_pattern, request_fields
from mpesa_atm.fuzz.events import Event, RequestSent
from mpesa_atm.operations import operations_of
from mpesa_atm.settings import Settings
from mpesa_atm.spec import load_spec
from tests.fuzz.partners import BROKEN


def _key(body: dict) -> str:
    return json.dumps(body, sort_keys=True)


def _request_schema(operation_id: str, role: str) -> dict:
    """The operation's request schema from the bundled document, checked with jsonschema on its own."""
    document = load_spec(f"{role}.yaml")
    op = next(op for op in operations_of(role) if op.id == operation_id)
    ref = document["paths"][op.path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**ref, "components": document["components"]}


@pytest.mark.parametrize("role", ["bank", "ipg"])
def test_each_field_is_sent_at_its_documented_edges_valid_and_answered_on_the_merits(
    mocks, credentials, role
):
    app = mocks.bank_app if role == "bank" else mocks.ipg_app
    answers: dict[str, str | None] = {}

    def listen(event: Event) -> None:
        exchange = event.exchange if isinstance(event, RequestSent) else None
        if exchange is not None and exchange.label.startswith("POST"):
            with contextlib.suppress(ValueError):
                answers.setdefault(_key(json.loads(exchange.request_body)), exchange.response_code)

    target = Target(role, app=app, credentials=credentials if role == "ipg" else None)
    result = run_campaign(target, max_examples=1, seed=3, listeners=[listen])

    assert result.findings == [], "\n\n".join(render_finding(f) for f in result.findings)
    for op in operations_of(role):
        schema = _request_schema(op.id, role)
        sent = [c.body for c in result.sent if c.kind == "boundary" and c.operation.endswith(op.path)]
        for body in sent:
            jsonschema.validate(body, schema)  # valid: the partner must answer it on the merits
            assert answers[_key(body)] == "0", body  # and the mocks do: 0 Success, token made
            if role == "ipg":
                assert (body["input_Username"], body["input_Password"], body["input_BankShortcode"]) == (
                    credentials.username,
                    credentials.password,
                    credentials.shortcode,
                )
        # Compared with the document's formats, read here on their own rather than through the phase.
        properties = load_spec("common.yaml")["components"]["schemas"]
        request = schema["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        for field, ref in request["properties"].items():
            if field in CREDENTIAL_FIELDS:
                continue
            formats = properties[ref["$ref"].rsplit("/", 1)[1]]
            values = {body[field] for body in sent if field in body}
            if "enum" in formats:
                assert values == set(formats["enum"]), field
                continue
            lengths = {len(value) for value in values}
            assert {formats["minLength"], formats["maxLength"]} <= lengths, (field, sorted(lengths))
        amounts = {body["input_Amount"] for body in sent}
        assert any(re.fullmatch(r"[1-9][0-9]{11}\.[0-9]{2}", a) for a in amounts), (
            amounts
        )  # 12 digits, 2 decimals
        assert any(re.fullmatch(r"0\.0[1-9]", a) for a in amounts), amounts  # the smallest
        # Fresh references: none sent twice (but the one-character ones, of which there are few).
        for field in ("input_TransactionID", "input_ThirdPartyReference", "input_BankTransactionRef"):
            references = [body[field] for body in sent if len(body.get(field, "")) > 1]
            assert len(references) == len(set(references)), field


def test_every_request_field_has_edges_or_is_a_credential():
    for role in ("bank", "ipg"):
        for op in operations_of(role):
            fields = request_fields(op.id)
            schema = _request_schema(op.id, role)
            request = schema["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            assert set(fields) == set(request["properties"])
            for field, schema in fields.items():
                edges = field_edges(schema, str(schema.get("example", "")), random.Random(0))
                assert field in CREDENTIAL_FIELDS or len(edges) >= 2, field


@pytest.mark.parametrize(
    ("pattern", "edges"),
    [
        (r"^[0-9]{4}(?:0[1-9]|1[0-2])$", {"000001"}),  # one length; a branch inside: the first that fits
        (r"^(?:[1-9][0-9]{0,2}(?:\.[0-9]{1,2})?|0\.(?:0[1-9]|[1-9][0-9]?))$", {"1", "100.00", "0.1", "0.01"}),
        (r"^[^0-9a-zA-Z]{2}x?$", {"  ", "  x"}),  # no letter or digit allowed: any it allows
        (r"^[a]\d+$", {"a0", "a0000000"}),  # [a] is a literal; + up to maxLength
    ],
)
def test_each_alternative_of_a_pattern_gives_its_shortest_and_longest_value(pattern, edges):
    # Where the realistic value's character is allowed, it is taken; elsewhere the first one allowed.
    found = field_edges({"pattern": pattern, "maxLength": 8}, "a0000000", _FirstChoice())
    assert set(found) == edges
    assert all(re.fullmatch(pattern, value) for value in found)


class _FirstChoice(random.Random):
    """Draws the first of the characters allowed, so that the edges are known in advance."""

    def choice(self, seq):
        return seq[0]


@pytest.mark.parametrize("pattern", [r"^(?=a)b$", r"^\bx$", r"^(a)\1$", r"^a(b$", r"^*a$"])
def test_a_pattern_outside_the_subset_read_is_a_value_error_naming_its_element(pattern):
    with pytest.raises(ValueError, match="a pattern element this does not read"):
        parse_pattern(pattern)


def test_boundary_values_are_the_same_for_the_same_seed(make_mocks, tmp_path):
    def boundaries(seed: int) -> list:
        app = make_mocks(db_path=str(tmp_path / f"{seed}-{random.random()}.sqlite3")).bank_app
        result = run_campaign(Target("bank", app=app), max_examples=1, seed=seed, checks=["json_envelope"])
        return [case.body for case in result.sent if case.kind == "boundary"]

    first = boundaries(5)
    assert first == boundaries(5)
    assert first != boundaries(6)


_LONGEST_ACCOUNT = next(b for b in BROKEN if b.name == "crashes_on_longest_account_number")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bank_that_crashes_on_the_longest_account_number_fails_a_default_campaign(seed, tmp_path, running):
    app = running.start(_LONGEST_ACCOUNT.app(Settings(db_path=str(tmp_path / "bank.sqlite3"))))

    result = run_campaign(Target("bank", app=app), seed=seed)

    crashes = [f for f in result.findings if f.check == "not_a_server_error"]
    assert result.exit_code == 1 and crashes, [f.check for f in result.findings]
    assert re.search(r'"input_AccountNumber": "[0-9]{32}"', crashes[0].reproduce[-1])
