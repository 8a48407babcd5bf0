"""The answer's schema read first by its compiled validator (fuzz/answer_fields.py): what schema_problems
finds is what jsonschema alone finds, for answers that keep the schema and answers that break it in
each way it can be broken, and the compiled validator is the one that reads the answers to 200. And
answer_of, which parses an answer once for the checks that read it one after the other."""

from __future__ import annotations

from typing import Any

import fastjsonschema
import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from schemathesis import Response

from mpesa_atm.fuzz.answer_fields import _accepted, _compiled, response_validator, schema_problems
from mpesa_atm.fuzz.violations import answer_of

ANSWERS = {
    "token_generation": {
        "output_ResponseCode": "0",
        "output_ResponseDesc": "Success",
        "output_BankTransactionRef": "12345678123412341234123456789abc",
        "output_BankDateTime": "20190611 223210",
    },
    "token_redemption": {
        "output_ResponseCode": "0",
        "output_ResponseDesc": "Success",
        "output_InsightReference": "MPESA000000000001",
        "output_ThirdPartyReference": "T1",
    },
}
# Values near each field's edges: the patterns' `$` before a final newline, lengths around the
# limits, empty strings (a refusal's), other types, characters outside printable ASCII.
EDGES = (
    "",
    "0",
    "-3",
    "\n",
    "20190611 223210\n",
    "2019061 223210",
    "20191311 223210",
    "20190611 246010",
    "12345678123412341234123456789abc\n",
    "12345678123412341234123456789ab",
    "12345678123412341234123456789abcd",
    "1234567812341234123412345678 abc",
    "é" * 32,
    "x" * 33,
    0,
    None,
    True,
    ["0"],
)


def _jsonschema_alone(validator: Draft7Validator) -> Draft7Validator:
    """A validator of the same schema that response_validator did not make: it has no compiled one."""
    return Draft7Validator(validator.schema)


@pytest.mark.parametrize("operation_id", sorted(ANSWERS))
def test_the_answers_to_200_are_read_by_the_compiled_schema(operation_id: str) -> None:
    validator = response_validator(operation_id, 200)
    assert validator is not None
    assert _accepted(validator, dict(ANSWERS[operation_id]))
    assert not _accepted(_jsonschema_alone(validator), dict(ANSWERS[operation_id]))
    assert schema_problems(validator, ANSWERS[operation_id]) == []


@pytest.mark.parametrize("operation_id", sorted(ANSWERS))
@pytest.mark.parametrize("status", [200, 400])
def test_each_edge_of_each_field_is_judged_as_jsonschema_alone_judges_it(
    operation_id: str, status: int
) -> None:
    validator = response_validator(operation_id, status)
    assert validator is not None
    alone = _jsonschema_alone(validator)
    answer = ANSWERS[operation_id]
    for field in [*answer, "output_Extra"]:
        for value in EDGES:
            changed = {**answer, field: value}
            for required_only in (False, True):
                found = schema_problems(validator, changed, required_only=required_only)
                assert found == schema_problems(alone, changed, required_only=required_only), (field, value)
        lacking = {key: value for key, value in answer.items() if key != field}
        assert schema_problems(validator, lacking) == schema_problems(alone, lacking)
    # A newline before the end passes the pattern for jsonschema (Python's `$`), not for the compiled
    # schema, which then leaves the answer to jsonschema: the length alone refuses it.
    changed = {**answer, next(iter(answer)): "0\n"}
    assert schema_problems(validator, changed) == schema_problems(alone, changed)


_VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.text(alphabet=st.sampled_from("0123456789 -abcé\n\t"), max_size=40),
    st.integers(),
)


@pytest.mark.parametrize("operation_id", sorted(ANSWERS))
@hypothesis_settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_answer_is_judged_as_jsonschema_alone_judges_it(operation_id: str, data: Any) -> None:
    validator = response_validator(operation_id, 200)
    assert validator is not None
    fields = [*ANSWERS[operation_id], "output_Extra"]
    answer = data.draw(st.dictionaries(st.sampled_from(fields), _VALUES, max_size=len(fields)))
    answer = {**data.draw(st.sampled_from([{}, ANSWERS[operation_id]])), **answer}
    assert schema_problems(validator, answer) == schema_problems(_jsonschema_alone(validator), answer)


def _response(content: Any) -> Response:
    return Response(200, {}, content, requests.PreparedRequest(), 0.0, True)


def test_each_check_reads_the_answer_it_is_given_and_its_own_copy() -> None:
    first = _response(b'{"output_ResponseCode": "0"}')
    read = answer_of(first)
    assert read == {"output_ResponseCode": "0"}
    read["output_ResponseCode"] = "-1"  # a check that changed what it read changes no other's
    assert answer_of(first) == {"output_ResponseCode": "0"}
    assert answer_of(_response(b'{"output_ResponseCode": "-3"}')) == {"output_ResponseCode": "-3"}
    assert answer_of(_response(b"[]")) is None
    changing = bytearray(b'{"output_ResponseCode": "0"}')
    assert answer_of(_response(changing)) == {"output_ResponseCode": "0"}
    changing[-3:-2] = b"7"
    assert answer_of(_response(changing)) == {"output_ResponseCode": "7"}
    assert answer_of(first) == {"output_ResponseCode": "0"}


def test_a_schema_fastjsonschema_would_read_otherwise_is_left_to_jsonschema() -> None:
    assert _compiled({"type": "string", "pattern": "^[$]a$"}) is None  # its `$` in [] a bad escape
    assert _compiled({"type": "string", "format": "date-time"}) is None
    assert _compiled({"type": "integer", "enum": [1]}) is None
    assert _compiled({"type": "object", "additionalProperties": {"type": "string"}}) is None
    compiled = _compiled({"type": "string", "pattern": "^a$"})
    assert compiled is not None and compiled("a") == "a"
    with pytest.raises(fastjsonschema.JsonSchemaException):
        compiled("a\n")  # jsonschema's `$` takes it; the compiled schema leaves it to jsonschema
