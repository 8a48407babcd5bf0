"""How each of Pact's mismatches is judged, by the rules `fuzz` judges by (`mpesa_atm.judgement`):
where the document speaks a failure, where it is silent (HTTP statuses, the Content-Type, the formats it
does not give, which tokens may be reversed) a warning naming its row of docs/spec-notes.md. Pact does
not compare a body labelled otherwise than the contract (text/plain): such a body is compared here, with
the contract's matching rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mpesa_atm.codes import GIVES_A_TOKEN, MAPPED_CODES
from mpesa_atm.judgement import FAILURE, RULES, Severity, documented

__all__ = ["Mismatch", "judged", "wording"]


@dataclass(frozen=True)
class Mismatch:
    """One mismatch Pact found (or, for a body Pact did not compare, the harness), in received /
    expected words, and the rule of `mpesa_atm.judgement` it breaks: None for a break of the contract
    that no rule of the table names (a failure: the contract is the document's samples)."""

    text: str
    rule: str | None = None

    @property
    def severity(self) -> Severity:
        return RULES[self.rule].severity if self.rule else FAILURE

    def __str__(self) -> str:
        if self.rule is None or self.severity == FAILURE:
            return self.text
        return documented(self.rule, f"{self.text}; left open by the document: {RULES[self.rule].says}")


# Pact words a value mismatch "Expected <received> (<type>) to <what the contract wants>".
_PACT_VALUE_MISMATCH = re.compile(r"Expected (?:'.*?'|\S+)(?: \(\w+\))? (to .*)$", re.DOTALL)


def _received(item: dict[str, Any], text: str) -> str:
    """A body mismatch as received / expected: `received "-1", the contract expects it to be ...`."""
    wanted = _PACT_VALUE_MISMATCH.match(text)
    if item.get("actual") is None or wanted is None:
        return text
    return f"received {item['actual']}, the contract expects it {wanted.group(1)}"


def _text(item: dict[str, Any]) -> str:
    """A mismatch in received / expected words, Pact's own where it words them well."""
    kind = item.get("type")
    text = item.get("mismatch") or f"expected {item.get('expected')}, received {item.get('actual')}"
    if kind == "BodyMismatch":
        return f"{item.get('path') or 'body'}: {_received(item, text)}"
    if kind == "StatusMismatch":
        return f"status: {text}"
    if kind == "HeaderMismatch":
        return f"header {item.get('key')}: {text}"
    return f"{kind}: {text}"


@dataclass(frozen=True)
class _Answer:
    """What is known of an interaction's answer: the code its contract expects and the code that came
    back (None when unknown: a broker's pact the harness does not ship), and the contract's response."""

    description: str
    expected_code: str | None
    actual_code: str | None
    response: dict[str, Any] | None


# The rule of a code the contract expects, where one rule of the document says it.
_CODE_RULES = {"-3": "duplicate", "-4": "credentials", "-5": "credentials", "-9": "unknown_token"}
# The one interaction whose code the harness's reading of "which tokens may be reversed" decides.
_HELD_TOKEN_REVERSAL = "a token reversal for a token the iPG holds"
_REFERENCES = ("$.output_InsightReference", "$.output_BankTransactionRef", "$.output_BankDateTime")
_ECHO = "$.output_ThirdPartyReference"
_PASSES = ""  # a mismatch of the contract that no rule counts: an empty reference in a refusal


def _value(raw: Any) -> tuple[bool, Any]:
    """The received value of a body mismatch (Pact gives it as JSON text): (known, value)."""
    if not isinstance(raw, str):
        return False, None
    try:
        return True, json.loads(raw)
    except ValueError:
        return False, None


def _rule_of(item: dict[str, Any], answer: _Answer) -> str | None:
    """The rule of `mpesa_atm.judgement` that a mismatch breaks; None: the contract's own (a
    failure); _PASSES: none (an empty reference in a refusal, row 23)."""
    kind = item.get("type")
    if kind == "StatusMismatch":
        actual = item.get("actual")
        return "server_error" if isinstance(actual, int) and actual >= 500 else "http_status"
    if kind == "HeaderMismatch":
        return "content_type" if str(item.get("key", "")).lower() == "content-type" else None
    if kind == "BodyTypeMismatch":
        return "content_type" if item.get("compared") else None
    if kind != "BodyMismatch":
        return None
    path = item.get("path")
    known, value = _value(item.get("actual"))
    if path == "$.output_ResponseCode":
        if not known or not isinstance(value, str):
            return "envelope"
        if value not in MAPPED_CODES:
            return "mapped_code"
        if (
            answer.description == _HELD_TOKEN_REVERSAL
            and value == "-1"
            and answer.expected_code in ("0", None)
        ):
            return "reversible_tokens"  # an iPG that reverses only redeemed tokens: -1 "not redeemed"
        return _CODE_RULES.get(answer.expected_code or "")
    if path == "$.output_ResponseDesc":
        return "envelope"
    if path in (*_REFERENCES, _ECHO):
        if not known or not isinstance(value, str):
            return "required_output"
        # An unknown code is judged as an answer that gives a token: the stricter reading.
        refusal = answer.actual_code is not None and answer.actual_code not in GIVES_A_TOKEN
        if value == "" and refusal:
            return _PASSES  # a request refused before it was recorded has none (row 23)
        if path == _ECHO:
            return "echo"
        if value == "":
            return "required_output"
        if refusal:
            return "refusal_references"
        if path == "$.output_InsightReference":
            return "formats"  # the document shows 19 characters and gives no length or format
        if path == "$.output_BankTransactionRef":
            return "bank_reference" if len(value) != 32 else "formats"  # 32 characters, ours printable
        return "bank_date_time"
    if path == "$":
        return "required_output" if "missing" in str(item.get("mismatch", "")) else "envelope"
    return None


def _matched(matcher: dict[str, Any], actual: Any, example: Any) -> str | None:
    """What `actual` fails of one of the contract's matchers (Pact's words), or None."""
    kind = matcher.get("match", "equality")
    if kind == "regex":
        regex = str(matcher.get("regex", ""))
        ok = isinstance(actual, str) and re.search(regex, actual) is not None
        return None if ok else f"to match '{regex}'"
    if kind == "type":
        return None if type(actual) is type(example) else f"to be the same type as '{example}'"
    if kind == "equality":
        return None if actual == example else f"to be equal to '{example}'"
    return f"to pass the matcher {kind!r}, which the harness does not apply itself"


def _compared(item: dict[str, Any], response: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Pact compares no body labelled with another content type than the contract's (a
    BodyTypeMismatch): the harness compares it as Pact would have, from the contract's example and
    matching rules, so that a body it cannot judge is never passed. Mismatches in Pact's shape."""
    raw = item.get("actualBody")
    content = ((response or {}).get("body") or {}).get("content")
    if not isinstance(raw, str) or not isinstance(content, dict):
        return [{**item, "mismatch": f"{item.get('mismatch')}: the body was not compared"}]
    label = {**item, "compared": True}
    try:
        body = json.loads(raw)
    except ValueError:
        return [
            label,
            {"type": "BodyMismatch", "path": "$", "mismatch": f"the body is not JSON: {raw[:80]!r}"},
        ]
    if not isinstance(body, dict):
        return [label, {"type": "BodyMismatch", "path": "$", "mismatch": f"not a JSON object: {raw[:80]!r}"}]
    found: list[dict[str, Any]] = [label]
    missing = [key for key in content if key not in body]
    if missing:
        found.append(
            {
                "type": "BodyMismatch",
                "path": "$",
                "mismatch": f"Actual map is missing the following keys: {', '.join(missing)}",
            }
        )
    rules = (((response or {}).get("matchingRules") or {}).get("body")) or {}
    for key, example in content.items():
        if key not in body:
            continue
        path = f"$.{key}"
        matchers = (rules.get(path) or {}).get("matchers") or [{"match": "equality"}]
        for matcher in matchers:
            wanted = _matched(matcher, body[key], example)
            if wanted is not None:
                found.append(
                    {
                        "type": "BodyMismatch",
                        "path": path,
                        "actual": json.dumps(body[key]),
                        "expected": json.dumps(example),
                        "mismatch": f"Expected '{body[key]}' {wanted}",
                    }
                )
                break
    return found


def _answer(entry: dict[str, Any], items: list[dict[str, Any]], contract: dict[str, Any] | None) -> _Answer:
    response = (contract or {}).get("response")
    content = ((response or {}).get("body") or {}).get("content")
    expected = content.get("output_ResponseCode") if isinstance(content, dict) else None
    actual = expected if isinstance(expected, str) else None
    for item in items:
        if item.get("type") == "BodyTypeMismatch":
            known, body = _value(item.get("actualBody"))
            code = body.get("output_ResponseCode") if known and isinstance(body, dict) else None
            actual = code if isinstance(code, str) else None
        elif item.get("path") == "$.output_ResponseCode":
            known, code = _value(item.get("actual"))
            actual = code if known and isinstance(code, str) else None
    return _Answer(
        str(entry.get("description", "")),
        expected if isinstance(expected, str) else None,
        actual,
        response if isinstance(response, dict) else None,
    )


def judged(entry: dict[str, Any], contract: dict[str, Any] | None) -> list[Mismatch]:
    """Each mismatch of an interaction with the rule it breaks; those no rule counts left out."""
    items = [item for item in entry["mismatch"].get("mismatches", []) if isinstance(item, dict)]
    answer = _answer(entry, items, contract)
    expanded: list[dict[str, Any]] = []
    for item in items:
        expanded.extend(
            _compared(item, answer.response) if item.get("type") == "BodyTypeMismatch" else [item]
        )
    labelled = any(
        i.get("type") == "HeaderMismatch" and str(i.get("key", "")).lower() == "content-type"
        for i in expanded
    )
    judged = []
    for item in expanded:
        if item.get("type") == "BodyTypeMismatch" and item.get("compared") and labelled:
            continue  # the Content-Type header's mismatch says it
        rule = _rule_of(item, answer)
        if rule != _PASSES:
            judged.append(Mismatch(_text(item), rule))
    return judged


def wording(mismatch: dict[str, Any]) -> list[str]:
    """The mismatches of an interaction, worded, without judging them."""
    if mismatch.get("type") == "error":
        return [str(mismatch.get("message", "error"))]
    return [_text(item) for item in mismatch.get("mismatches", [])]
