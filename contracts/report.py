"""What a verification found: each interaction's outcome, the provider-state changes refused, and
the mismatches as Pact reported them, worded as received / expected; the same as JUnit XML.

Each mismatch is judged by the rules `fuzz` judges by (`mpesa_atm.judgement`): where the document
speaks, a failure; where it is silent (HTTP statuses, the Content-Type, the formats it does not give,
which tokens may be reversed), a warning naming its row of docs/spec-notes.md. An interaction whose
mismatches are all warnings passed with warnings ("warning"), and fails only under --strict.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mpesa_atm.judgement import FAILURE, RULES, WARNING, Severity, documented
from mpesa_atm.reporting.exchange import Exchange

__all__ = ["InteractionOutcome", "Mismatch", "Report", "StateFailure", "outcomes", "write_junit"]

Status = Literal["verified", "warning", "failed", "pending"]


@dataclass(frozen=True)
class StateFailure:
    """A provider-state change that the provider's endpoint refused or did not answer."""

    state: str
    action: str
    params: dict[str, Any]
    detail: str
    status: int | None = None  # the endpoint's answer, None when it gave none

    def __str__(self) -> str:
        params = json.dumps(self.params, sort_keys=True)
        return f"{self.action} of provider state {self.state!r} {params}: {self.detail}"


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


@dataclass(frozen=True)
class InteractionOutcome:
    consumer: str
    description: str
    states: tuple[str, ...]
    # verified; warning: passed, its mismatches all warnings; failed; pending: failed, but the broker
    # marks it pending.
    status: Status
    problems: tuple[str, ...] = ()  # what failed it: the failures, or why nothing was sent
    warnings: tuple[str, ...] = ()  # each warning with where its rule comes from
    # When the verification was recorded: what was sent and what came back (None: nothing was sent),
    # and the interaction as the pact file has it (None for a broker's pact).
    exchange: Exchange | None = None
    contract: dict[str, Any] | None = None


@dataclass
class Report:
    provider: str
    url: str
    sources: list[str]
    states_url: str
    interactions: list[InteractionOutcome] = field(default_factory=list)
    state_failures: list[StateFailure] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    publish_errors: list[str] = field(default_factory=list)
    pact_output: str = ""
    role: str = ""
    started: datetime | None = None
    duration: float = 0.0  # seconds
    options: list[tuple[str, str]] = field(default_factory=list)  # to show in a report
    exchanges: list[Exchange] = field(default_factory=list)  # every request sent, when recorded
    strict: bool = False  # --strict: an interaction with warnings fails the verification

    @property
    def ok(self) -> bool:
        return bool(self.interactions) and not self.failed and not (self.strict and self.warned)

    @property
    def failed(self) -> list[InteractionOutcome]:
        return [i for i in self.interactions if i.status == "failed"]

    @property
    def warned(self) -> list[InteractionOutcome]:
        """The interactions that passed with warnings (which fail only under --strict)."""
        return [i for i in self.interactions if i.status == "warning"]

    def summary(self) -> str:
        """`9 interactions: 7 verified, 2 with warnings, 0 failed` (and the pending ones)."""
        counts = {status: sum(i.status == status for i in self.interactions) for status in _MARKS}
        total = len(self.interactions)
        summary = (
            f"{total} interaction{'' if total == 1 else 's'}: {counts['verified']} verified,"
            f" {counts['warning']} with warnings, {counts['failed']} failed"
        )
        if counts["pending"]:
            summary += f", {counts['pending']} pending"
        if self.strict and counts["warning"]:
            summary += " (--strict: warnings fail)"
        return summary

    def render(self, *, verbose: bool = False) -> str:
        lines = [
            f"Verifying {self.provider} at {self.url}",
            *(f"  pacts: {source}" for source in self.sources),
            f"  provider states: {self.states_url}",
            "",
        ]
        for outcome in self.interactions:
            lines.append(f"  {_MARKS[outcome.status]} {outcome.description}  (consumer {outcome.consumer})")
            if outcome.status != "verified":
                if outcome.states:
                    lines.append(f"            given: {'; '.join(outcome.states)}")
                lines.extend(f"            {problem}" for problem in outcome.problems)
                lines.extend(f"            warning: {warning}" for warning in outcome.warnings)
        lines.extend(f"  note: {notice}" for notice in self.notices)
        lines.extend(f"  error: {error}" for error in self.publish_errors)
        lines += ["", self.summary()]
        if verbose and self.pact_output:
            lines += ["", "Pact verifier's own report:", self.pact_output.rstrip()]
        return "\n".join(lines)


_MARKS = {"verified": "ok     ", "warning": "WARNING", "failed": "FAILED ", "pending": "pending"}

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


# The answers that give a token, or the first one's: their references are the document's, not a
# refusal's (row 23).
_GIVES_A_TOKEN = frozenset({"0", "-3"})
_MAPPED_CODES = frozenset({"0", "-1", "-2", "-3", "-4", "-5", "-6", "-7", "-8", "-9"})
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
        if value not in _MAPPED_CODES:
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
        refusal = answer.actual_code is not None and answer.actual_code not in _GIVES_A_TOKEN
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


def _judged(entry: dict[str, Any], contract: dict[str, Any] | None) -> list[Mismatch]:
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


def _problems(mismatch: dict[str, Any]) -> list[str]:
    """The mismatches of an interaction, worded, without judging them."""
    if mismatch.get("type") == "error":
        return [str(mismatch.get("message", "error"))]
    return [_text(item) for item in mismatch.get("mismatches", [])]


def outcomes(
    results: dict[str, Any],
    failures: list[StateFailure],
    contracts: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[InteractionOutcome]:
    """Each interaction's outcome from Pact's results, its mismatches judged by the shared rules;
    `contracts` are the interactions by (consumer, description), to know the code each expects."""
    outcomes = []
    for entry in results.get("interactionResults", []):
        consumer = str(entry.get("consumer", ""))
        states = tuple(str(state) for state in entry.get("providerStates", []))
        mismatch = entry.get("mismatch")
        if not mismatch:
            outcomes.append(InteractionOutcome(consumer, entry["description"], states, "verified"))
            continue
        if mismatch.get("type") == "error":
            # Pact says only that "a state change handler has failed": add the endpoint's reasons.
            problems = _problems(mismatch)
            problems.extend(dict.fromkeys(str(f) for f in failures if f.state in states))
            warnings: list[str] = []
        else:
            judged = _judged(entry, (contracts or {}).get((consumer, str(entry["description"]))))
            problems = [m.text for m in judged if m.severity == FAILURE]
            warnings = [str(m) for m in judged if m.severity == WARNING]
        status: Status
        if problems:
            status = "pending" if entry.get("pending") else "failed"
        else:
            status = "warning" if warnings else "verified"
        outcomes.append(
            InteractionOutcome(
                consumer, entry["description"], states, status, tuple(problems), tuple(warnings)
            )
        )
    return outcomes


def write_junit(report: Report, path: str | Path) -> None:
    """One test case per interaction, named by its description, its class the consumer whose pact it
    is: failed with the mismatches (and the provider states given), skipped when the broker marks it
    pending, else passed. Its warnings go in the test case's system-out, with the property
    severity=warning, and fail it (type "warning") only under --strict, as fuzz's JUnit does."""
    strict_failures = [i for i in report.warned if report.strict]
    pending = sum(i.status == "pending" for i in report.interactions)
    suite = ET.Element(
        "testsuite",
        name=f"mpesa-atm verify {report.role or report.provider}",
        tests=str(len(report.interactions)),
        failures=str(len(report.failed) + len(strict_failures)),
        errors="0",
        skipped=str(pending),
        time=f"{report.duration:.3f}",
    )
    if report.started is not None:
        suite.set("timestamp", report.started.isoformat(timespec="seconds"))
    properties = ET.SubElement(suite, "properties")
    shown = [("provider", report.provider), ("url", report.url), ("provider states", report.states_url)]
    shown += [("pacts", source) for source in report.sources]
    shown += [("warnings", str(len(report.warned))), ("strict", str(report.strict).lower())]
    for name, value in shown:
        ET.SubElement(properties, "property", name=name, value=value)
    for outcome in report.interactions:
        testcase = ET.SubElement(
            suite, "testcase", classname=outcome.consumer or report.provider, name=outcome.description
        )
        if outcome.exchange is not None:
            testcase.set("time", f"{outcome.exchange.elapsed:.3f}")
        given = [f"given: {'; '.join(outcome.states)}"] if outcome.states else []
        warnings = [f"warning: {warning}" for warning in outcome.warnings]
        if outcome.warnings:
            case_properties = ET.SubElement(testcase, "properties")
            ET.SubElement(case_properties, "property", name="severity", value="warning")
        if outcome.status == "failed":
            failure = ET.SubElement(
                testcase,
                "failure",
                message=outcome.problems[0] if outcome.problems else "failed",
                type="mismatch",
            )
            failure.text = "\n".join([*given, *outcome.problems])
        elif outcome.status == "pending":
            skipped = ET.SubElement(
                testcase, "skipped", message="pending: failed, but the broker marks it pending"
            )
            skipped.text = "\n".join([*given, *outcome.problems])
        elif outcome.status == "warning" and report.strict:
            failure = ET.SubElement(
                testcase, "failure", message=f"--strict: {outcome.warnings[0]}", type="warning"
            )
            failure.text = "\n".join([*given, *warnings])
        if warnings and not (outcome.status == "warning" and report.strict):
            ET.SubElement(testcase, "system-out").text = "\n".join([*given, *warnings])
        elif given and outcome.status == "verified":
            ET.SubElement(testcase, "system-out").text = given[0]
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
