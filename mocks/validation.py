"""Request validation that says, in one line, which field or parameter is wrong and how.

connexion's own validators answer with jsonschema's message (for an enum, all 170 currencies; for a
parameter, the whole schema and instance) and let a body nested too deeply for the JSON parser
escape as a 500; these do neither.

Bodies are checked first by a compiled validator (fastjsonschema), about fifteen times faster than
jsonschema, for schemas whose every keyword both read alike; jsonschema then words the refusal of a
body the compiled one refuses. Responses are checked the same way.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import fastjsonschema
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator, Draft4Validator
from connexion.utils import is_null, is_nullable
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.validators import extend
from starlette.types import Scope

__all__ = ["VALIDATORS", "check_body", "explain", "parse_body"]

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def explain(error: ValidationError, *, name: str | None = None) -> str:
    """One line naming the field (or the parameter `name`) and what is wrong with it."""
    path = ".".join(str(part) for part in error.absolute_path)
    field = name or path or "the body"
    value, schema = error.instance, error.schema
    match error.validator:
        case "required":
            missing = [name for name in schema.get("required", []) if name not in value]
            return f"{', '.join(missing) or error.message} missing"
        case "additionalProperties":
            known = set(schema.get("properties", {}))
            unknown = sorted(name for name in value if name not in known)
            return f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
        case "type":
            expected = _TYPE_WORDS.get(str(error.validator_value), str(error.validator_value))
            return f"{field} must be {expected}, not {_kind(value)}"
        case "enum" if len(error.validator_value) > 10:
            return f"{field} {_shown(value)} is not one of the {len(error.validator_value)} documented values"
        case "enum":
            return f"{field} must be one of {', '.join(map(str, error.validator_value))}, not {_shown(value)}"
        case "pattern":
            return f"{field} {_shown(value)} does not match {error.validator_value}"
        case "minLength" if error.validator_value == 1:
            return f"{field} is empty"
        case "minLength":
            return f"{field} is shorter than {error.validator_value} characters"
        case "maxLength":
            return f"{field} is longer than {error.validator_value} characters"
        case "minimum":
            above = "above" if schema.get("exclusiveMinimum") else "at least"
            return f"{field} must be {above} {error.validator_value}, not {_shown(value)}"
        case "maximum":
            below = "below" if schema.get("exclusiveMaximum") else "at most"
            return f"{field} must be {below} {error.validator_value}, not {_shown(value)}"
        case "anyOf" if (needed := _required_sets(error.validator_value)) is not None:
            # "at least one of these fields", as control.yaml's FaultRule says it
            return f"{field} needs {_either(needed)}"
        case "not" if (both := _required_sets([error.validator_value])) is not None:
            # "not these fields together"
            return f"{field} has {both[0]}: give only one of them"
        case _:
            return f"{field}: {error.message}"


def _required_sets(schemas: Any) -> list[str] | None:
    """For subschemas that only require fields ([{"required": ["a"]}, {"required": ["b", "c"]}]),
    each set in words (["a", "b and c"]); None for any other kind of subschema."""
    if not isinstance(schemas, list) or not all(
        isinstance(sub, dict) and set(sub) == {"required"} for sub in schemas
    ):
        return None
    return [" and ".join(sub["required"]) for sub in schemas]


def _either(options: list[str]) -> str:
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


_TYPE_WORDS = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "boolean": "a boolean",
    "number": "a number",
    "integer": "a whole number",
    "null": "null",
}


@functools.cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    r"""`pattern` as JSON Schema means it (ECMA 262): Python's `$` also matches before a final
    newline, so "200\n" would pass "^...$"; `\Z` does not."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\Z"
    return re.compile(pattern)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_RequestValidator = extend(Draft4RequestValidator, {"pattern": _pattern})

# Keywords that fastjsonschema and jsonschema (Draft 4, as connexion extends it) read alike, with
# the values these specs give them; `format` is handled apart, `properties` and `pattern` below.
_PORTABLE = {"type", "required", "additionalProperties", "enum", "minLength", "maxLength"}
_ANNOTATIONS = {"description", "example", "title"}
_PORTABLE_TYPES = {"object", "string"}


def _portable(schema: Any, *, top: bool = False) -> dict[str, Any] | None:
    """`schema` for fastjsonschema, meaning exactly what jsonschema makes of it; None when it uses
    anything outside the few keywords whose meaning is checked to be the same (nullable, $ref,
    numbers, formats jsonschema checks...)."""
    if not isinstance(schema, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _ANNOTATIONS or (top and key == "components"):  # components: for $refs only
            continue
        if key == "format":
            if value in Draft4Validator.FORMAT_CHECKER.checkers:
                return None
            continue  # a format jsonschema does not check (password): no constraint
        if key == "pattern" and isinstance(value, str):
            out[key] = _ecma_regex(value).pattern
        elif key == "properties" and isinstance(value, dict):
            properties = {name: _portable(sub) for name, sub in value.items()}
            if any(sub is None for sub in properties.values()):
                return None
            out[key] = properties
        elif key in _PORTABLE and _portable_value(key, value):
            out[key] = value
        else:
            return None
    return out


def _portable_value(key: str, value: Any) -> bool:
    if key == "additionalProperties":
        return isinstance(value, bool)  # a schema for the other fields: not looked into
    if key == "type":
        return value in _PORTABLE_TYPES
    return True


_COMPILED: dict[int, tuple[dict[str, Any], Any]] = {}


def _compiled(schema: dict[str, Any]) -> Any:
    """The compiled validator of `schema` (None: jsonschema only), one per schema of the spec.

    connexion hands each request the same schema object of its operation, so the cache is keyed by
    identity, and holds the schema so that its id is not reused."""
    entry = _COMPILED.get(id(schema))
    if entry is None or entry[0] is not schema:
        portable = _portable(schema, top=True)
        entry = (schema, fastjsonschema.compile(portable) if portable is not None else None)
        _COMPILED[id(schema)] = entry
    return entry[1]


def _passes(schema: dict[str, Any], body: Any) -> bool:
    """True when the compiled validator accepts `body`; False: ask jsonschema."""
    validate = _compiled(schema)
    if validate is None:
        return False
    try:
        validate(body)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


class ReadableJSONBodyValidator(JSONRequestBodyValidator):
    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        # Read from the header here: connexion misses a charset after "; " and reads the body as UTF-8.
        charset = declared_charset(scope)
        if charset is not None and charset.lower() != "utf-8":
            raise UnsupportedMediaTypeProblem(detail=f"charset {charset}: the API's bodies are UTF-8")
        return parse_body(b"".join([message async for message in stream]))

    def _validate(self, body: Any) -> dict[str, Any] | None:
        check_body(self._schema, body)
        return None


def declared_charset(scope: Scope) -> str | None:
    """The charset parameter of the request's first Content-Type, unquoted; None without one."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            for parameter in bytes(value).decode("latin-1").split(";")[1:]:
                key, _, given = parameter.partition("=")
                if key.strip().lower() == "charset":
                    return given.strip().strip('"')
            return None
    return None


def parse_body(raw: bytes, encoding: str = "utf-8") -> Any:
    """The JSON value of a request body (None when it is empty); BadRequestProblem, in one line,
    when it is no JSON text (or 415 for a charset Python does not know)."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise BadRequestProblem(detail="the body is not UTF-8") from None
    except LookupError:  # charset=foo: no answer can be read from it
        raise UnsupportedMediaTypeProblem(detail=f"unknown charset {encoding}") from None
    if not text:
        return None
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        parsed = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadRequestProblem(detail=f"the body is not JSON: {exc}") from None
    except ValueError as exc:  # NaN, Infinity: not JSON
        raise BadRequestProblem(detail=f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequestProblem(detail="the body is nested too deeply") from None
    if "\\u" in text and _has_lone_surrogate(parsed):
        # JSON may escape half of a UTF-16 pair ("\ud800"); that is no text, and nothing
        # downstream (password hashing, SQLite) can encode it.
        raise BadRequestProblem(detail="a string holds a lone surrogate (\\ud800-\\udfff), not text")
    return parsed


def check_body(schema: dict[str, Any], body: Any) -> None:
    """BadRequestProblem, in one line, unless `body` (parsed) is what `schema` allows."""
    if body is None:  # JSON null (an empty body is refused before parsing)
        raise BadRequestProblem(detail="the body must be an object, not null")
    if _passes(schema, body):
        return
    validator = _RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(body))
    if error is not None:
        raise BadRequestProblem(detail=explain(error))


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # json.loads would build one a call


class ReadableParameterValidator(ParameterValidator):
    """connexion's parameter validator, whose refusal is one line naming the parameter."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        if value is None or (is_nullable(param) and is_null(value)):
            message: str | None = ParameterValidator.validate_parameter(
                parameter_type, value, param, param_name
            )
            return message
        schema = param.get("schema", param)
        validator = Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
        error = best_match(validator.iter_errors(value))
        return None if error is None else explain(error, name=f"{parameter_type} parameter {param['name']}")


class CompiledJSONResponseBodyValidator(JSONResponseBodyValidator):
    def _validate(self, body: dict[str, Any]) -> None:
        if not _passes(self._schema, body):
            super()._validate(body)  # raises, in connexion's words, when jsonschema agrees


VALIDATORS = {
    **VALIDATOR_MAP,
    "parameter": ReadableParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": ReadableJSONBodyValidator}),
    "response": MediaTypeDict({**VALIDATOR_MAP["response"], "*/*json": CompiledJSONResponseBodyValidator}),
}
