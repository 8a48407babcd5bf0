"""What an answer's fields must be, for the checks of every answer and for the probes' answers (which no
answer check reads): the Required output fields of every answer and the harness's formats, judged by
`judgement.RULES`, and an output_ResponseDesc against its code's row of the mapping table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft7Validator
from schemathesis import Case

from mpesa_atm.codes import DESCRIPTIONS, GIVES_A_TOKEN, ResponseCode
from mpesa_atm.fuzz.violations import (
    contradicted_code,
    documented_code,
    kind_of,
    operation_id_of,
    shown,
    text,
)
from mpesa_atm.judgement import FAILURE, RULES
from mpesa_atm.operations import operations
from mpesa_atm.spec import inlined, operation_definition, resolved

__all__ = [
    "description_contradiction",
    "missing_output",
    "response_validator",
    "schema_problems",
]


@functools.cache
def response_validator(operation_id: str, status: int) -> Draft7Validator | None:
    """A validator of the answer the role's document gives `operation_id` for HTTP `status`, or None
    when the document has no answer for that status (status_code_conformance's business)."""
    if operation_id not in operations():
        return None
    document, post = operation_definition(operation_id)
    response = resolved(document, post["responses"].get(str(status)))
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    # Its references inlined: resolving them on every answer was most of the validation's time (the
    # proxy judges every answer in the path of real traffic).
    plain = inlined(document, schema)
    validator = Draft7Validator({"allOf": [plain]})
    _COMPILED[id(validator)] = (validator, _compiled(plain))
    return validator


# The validators response_validator made, by identity, each with its schema compiled by fastjsonschema
# when it can be: an answer the compiled one accepts, jsonschema accepts too, and only the answers it
# refuses are read again by jsonschema, which words them.
_COMPILED: dict[int, tuple[Draft7Validator, Callable[[Any], Any] | None]] = {}
# The keywords that fastjsonschema reads as jsonschema does, with the values _portable lets through.
_PORTABLE = frozenset({"type", "required", "properties", "additionalProperties", "enum", "minLength"})
_PORTABLE |= {"maxLength", "pattern", "description", "example", "title"}


def _portable(schema: Any) -> bool:
    """Whether fastjsonschema accepts no instance of `schema` that jsonschema refuses: the keywords
    are _PORTABLE, objects and strings only, the enums' values strings (Python's `in` would take 1 for
    True), closed or open objects (a schema of the other fields is not looked into)."""
    if not isinstance(schema, dict) or not _PORTABLE.issuperset(schema):
        return False
    return (
        schema.get("type", "object") in ("object", "string")
        and isinstance(schema.get("additionalProperties", True), bool)
        and all(isinstance(value, str) for value in schema.get("enum", ()))
        and all(_portable(sub) for sub in schema.get("properties", {}).values())
    )


def _strict(schema: Any) -> Any:
    """`schema` with each pattern's final `$` read as the end of the string only (`\\Z`): Python's `$`
    also matches before a final newline, so the compiled validator is never the laxer of the two."""
    if isinstance(schema, dict):
        return {
            key: _strict(value)
            if key != "pattern" or not isinstance(value, str)
            else re.sub(r"(?<!\\)\$$", r"\\Z", value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_strict(value) for value in schema]
    return schema


def _compiled(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    """`schema` compiled by fastjsonschema, or None when it may read it otherwise than jsonschema, or
    cannot compile it (it also reads a `$` inside [] as the end of the string: a bad escape there)."""
    if not _portable(schema):
        return None
    try:
        return fastjsonschema.compile(_strict(schema))
    except (fastjsonschema.JsonSchemaDefinitionException, re.error):
        return None


def _accepted(validator: Draft7Validator, answer: dict[str, Any]) -> bool:
    """Whether the compiled schema of response_validator's `validator` accepts `answer`, which
    jsonschema then accepts too; False when it refuses it, or has none: jsonschema says then."""
    entry = _COMPILED.get(id(validator))
    if entry is None or entry[0] is not validator or entry[1] is None:
        return False
    try:
        entry[1](answer)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def schema_problems(
    validator: Draft7Validator, answer: Mapping[str, Any], *, required_only: bool = False
) -> list[tuple[str, str, str, str]]:
    """Every way the answer breaks the schema, judged by the document: (the rule of judgement.RULES,
    title, received, documented). A Required output field missing from any answer, or not a string,
    breaks the document; the formats and the closed list of fields are the harness's. In a refusal an
    empty field passes (a request refused before it was recorded has no reference); the code's own
    value is mapped_response_code's. `required_only`: only what breaks the document (an answer with a
    status the harness does not use, whose formats are not ours to judge)."""
    code = text(answer, "output_ResponseCode")
    gives_a_token = code in GIVES_A_TOKEN
    problems: list[tuple[str, str, str, str]] = []
    lacking: Iterator[str] = iter(())
    instance = dict(answer)
    if _accepted(validator, instance):
        return problems
    for error in validator.iter_errors(instance):
        keyword = str(error.validator)
        field = str(error.absolute_path[0]) if error.absolute_path else ""
        if keyword in ("allOf", "anyOf", "oneOf") or (field == "output_ResponseCode" and keyword == "enum"):
            continue
        if keyword == "type":
            where = field or "the answer"
            problems.append(
                (
                    "required_output",
                    f"{where} is {kind_of(error.instance)}, not a string",
                    f"{where} {shown(error.instance)}",
                    "every output field a string (the document: String Required)",
                )
            )
        elif keyword == "required":
            # jsonschema gives one error per name the keyword lists and the answer lacks, in its order,
            # one after the other: the first of them starts the names, each takes the next.
            missing = next(lacking, None)
            if missing is None:
                lacking = (name for name in error.validator_value if name not in error.instance)
                missing = next(lacking)
            problems.append(
                (
                    "required_output",
                    f"The answer lacks {missing}",
                    f"an answer {shown(code)} without {missing}",
                    f"{missing} in every answer, whatever its code (the document: String Required); "
                    "in a refusal it may be empty",
                )
            )
        elif required_only:
            continue
        elif keyword == "additionalProperties":
            listed = error.schema.get("properties", {})
            extra = sorted((str(name) for name in error.instance if name not in listed), key=str)
            problems.append(
                (
                    "extra_output",
                    "The answer has an output field the document does not list",
                    ", ".join(extra),
                    "only the output fields the document lists (2.1.3.1, 2.2.3.1, 3.1.3.1); the harness's "
                    "schemas list them closed",
                )
            )
        elif error.instance == "" and not gives_a_token:
            continue
        else:
            problems.append(
                (
                    "formats" if gives_a_token or field not in _REFUSAL_REFERENCES else "refusal_references",
                    f"{field} is not in the harness's format",
                    f"{field} {shown(error.instance)}",
                    f"the harness's format of {field} (docs/spec-notes.md row 3): {_rule(error)}",
                )
            )
    return sorted(problems, key=lambda problem: RULES[problem[0]].severity != FAILURE)


def _rule(error: Any) -> str:
    keyword = str(error.validator)
    if keyword == "maxLength":
        return f"at most {error.validator_value} characters"
    if keyword == "minLength":
        return f"at least {error.validator_value} characters"
    if keyword == "pattern":
        return f"matching {error.validator_value}"
    if keyword == "enum":
        return "one of " + ", ".join(map(str, error.validator_value))
    return f"{keyword} {shown(error.validator_value)}"


# The references and date-time a refusal carries (docs/spec-notes.md row 23).
_REFUSAL_REFERENCES = frozenset(
    {
        "output_InsightReference",
        "output_ThirdPartyReference",
        "output_BankTransactionRef",
        "output_BankDateTime",
    }
)


def missing_output(case: Case, answer: Mapping[str, Any] | None) -> tuple[str, str, str] | None:
    """When `answer` (to `case`, or to a probe's variant of it) lacks a Required output field or has one
    that is not a string: (title, received, documented) of the finding, rule required_output; else
    None. For the answers of probes, which no answer check reads."""
    validator = response_validator(operation_id_of(case), 200)
    if validator is None or answer is None:
        return None
    problems = schema_problems(validator, answer, required_only=True)
    if not problems:
        return None
    _, title, received, documented = problems[0]
    return title, received, documented


def description_contradiction(answer: Mapping[str, Any] | None) -> tuple[str, str, str] | None:
    """When the answer's output_ResponseDesc is another code's description in the mapping table
    (violations.contradicted_code): (title, received, documented) of the finding; else None."""
    code = text(answer, "output_ResponseCode")
    description = text(answer, "output_ResponseDesc")
    named = contradicted_code(code, description)
    if named is None or code is None:
        return None
    own = documented_code(ResponseCode(code))
    return (
        f"output_ResponseDesc says {DESCRIPTIONS[named]} on code {code}",
        f"output_ResponseCode {shown(code)} with output_ResponseDesc {shown(description)}, the "
        f"description of {named.value} in the mapping table",
        f"the description of {own}, or free text, or a reason after it; not that of "
        f"{documented_code(named)} (Failure fits any negative code)",
    )
