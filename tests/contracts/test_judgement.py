"""How `mpesa-atm verify` judges each mismatch Pact reports, by the rules `fuzz` judges by
(`mpesa_atm.judgement`): a failure where the document speaks, a warning naming its spec-notes row where
it is silent, nothing for an empty reference in a refusal (row 23). The mismatches are in the shape
Pact's verifier gives them (seen against the partners of tests/fuzz/lenient.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mpesa_atm.contracts import BANK, IPG, pact_dir
from mpesa_atm.contracts.generate import pact_file_name, read_pact
from mpesa_atm.contracts.report import InteractionOutcome, Report, outcomes
from mpesa_atm.judgement import RULES

HELD = "a token redemption for a token the iPG holds"  # expects 0
REPEATED = "a token redemption that repeats one already made"  # expects -3
WRONG_PASSWORD = "a token redemption with a wrong password"  # expects -4
UNKNOWN = "a token redemption for a token the iPG does not hold"  # expects -9
REVERSAL = "a token reversal for a token the iPG holds"  # expects 0
REPEATED_REVERSAL = "a token reversal that repeats one already made"  # expects -3
GENERATION = "a token generation for a new transaction"  # expects 0 (the bank's)


def contracts() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for consumer, provider in ((BANK, IPG), (IPG, BANK)):
        for interaction in read_pact(pact_dir() / pact_file_name(consumer, provider))["interactions"]:
            found[(consumer, interaction["description"])] = interaction
    return found


def judged(description: str, *items: dict[str, Any], known: bool = True) -> InteractionOutcome:
    consumer = IPG if description == GENERATION else BANK
    entry = {
        "consumer": consumer,
        "description": description,
        "providerStates": [],
        "mismatch": {"type": "mismatches", "mismatches": list(items)},
    }
    (outcome,) = outcomes({"interactionResults": [entry]}, [], contracts() if known else None)
    return outcome


def body(path: str, actual: Any, wanted: str = "to match '^[!-~]{1,32}$'") -> dict[str, Any]:
    return {
        "type": "BodyMismatch",
        "path": path,
        "actual": json.dumps(actual),
        "expected": '"x"',
        "mismatch": f"Expected '{actual}' {wanted}",
    }


def code(actual: Any, expected: str) -> dict[str, Any]:
    return body("$.output_ResponseCode", actual, f"to be equal to '{expected}' (String)")


def status(actual: int) -> dict[str, Any]:
    return {
        "type": "StatusMismatch",
        "expected": 200,
        "actual": actual,
        "mismatch": f"expected 200 but was {actual}",
    }


def content_type(actual: str) -> dict[str, Any]:
    return {
        "type": "HeaderMismatch",
        "key": "Content-Type",
        "expected": "application/json",
        "actual": actual,
        "mismatch": f"Expected header 'Content-Type' to have value 'application/json' but was '{actual}'",
    }


def unread(actual_body: str, actual: str = "text/plain") -> dict[str, Any]:
    """Pact compares no body labelled otherwise than the contract: it says so, with the body."""
    return {
        "type": "BodyTypeMismatch",
        "actual": actual,
        "expected": "application/json",
        "actualBody": actual_body,
        "mismatch": f"Expected a body of 'application/json' but the actual content type was '{actual}'",
    }


def rows(outcome: InteractionOutcome) -> set[int]:
    """The spec-notes rows the outcome's warnings name."""
    return {
        rule.row for rule in RULES.values() if rule.row for w in outcome.warnings if f"row {rule.row})" in w
    }


UUID = "3f3eba80-b776-4144-a810-30067a4d894a"

# (interaction, mismatches, status, the rows its warnings name)
CASES = [
    pytest.param(WRONG_PASSWORD, [status(401)], "warning", {21}, id="-4-with-http-401"),
    pytest.param(
        WRONG_PASSWORD,
        [body("$.output_InsightReference", ""), status(401)],
        "warning",
        {21},
        id="-4-401-empty-ref",
    ),
    pytest.param(HELD, [status(500)], "failed", set(), id="a-5xx"),
    pytest.param(HELD, [content_type("text/plain")], "warning", {18}, id="text-plain-label"),
    pytest.param(
        HELD, [body("$.output_InsightReference", UUID)], "warning", {22}, id="36-char-insight-ref-in-0"
    ),
    pytest.param(
        REPEATED, [body("$.output_InsightReference", UUID)], "warning", {22}, id="36-char-insight-ref-in-3"
    ),
    pytest.param(HELD, [body("$.output_InsightReference", "")], "failed", set(), id="empty-insight-ref-in-0"),
    pytest.param(HELD, [body("$.output_InsightReference", 12)], "failed", set(), id="insight-ref-a-number"),
    pytest.param(UNKNOWN, [body("$.output_InsightReference", "")], "verified", set(), id="empty-ref-in-9"),
    pytest.param(
        UNKNOWN, [body("$.output_InsightReference", "has spaces")], "warning", {23}, id="bad-ref-in-9"
    ),
    pytest.param(
        HELD, [code("-1", "0"), body("$.output_InsightReference", "")], "failed", set(), id="redemption-1"
    ),
    pytest.param(
        REVERSAL,
        [code("-1", "0"), body("$.output_InsightReference", "")],
        "warning",
        {26},
        id="reversal-only-redeemed",
    ),
    pytest.param(REVERSAL, [code("-1", "0"), status(400)], "warning", {21, 26}, id="reversal-1-http-400"),
    pytest.param(REVERSAL, [code("-9", "0")], "failed", set(), id="reversal-9"),
    pytest.param(REVERSAL, [code("-3", "0")], "failed", set(), id="reversal-3"),
    pytest.param(REPEATED_REVERSAL, [code("-1", "-3")], "failed", set(), id="repeated-reversal-1"),
    pytest.param(REPEATED, [code("-1", "-3")], "failed", set(), id="repeated-redemption-1"),
    pytest.param(WRONG_PASSWORD, [code("-1", "-4"), status(401)], "failed", {21}, id="wrong-password-1"),
    pytest.param(HELD, [code(0, "0")], "failed", set(), id="code-a-number"),
    pytest.param(HELD, [code("-10", "0")], "failed", set(), id="unmapped-code"),
    pytest.param(
        HELD,
        [body("$.output_ResponseDesc", 0, "to be the same type as 'Success'")],
        "failed",
        set(),
        id="desc-a-number",
    ),
    pytest.param(
        HELD,
        [body("$.output_ThirdPartyReference", "other", "to be equal to 'x'")],
        "failed",
        set(),
        id="echo",
    ),
    pytest.param(
        HELD,
        [body("$.output_ThirdPartyReference", "", "to be equal to 'x'")],
        "failed",
        set(),
        id="echo-empty-in-0",
    ),
    pytest.param(
        WRONG_PASSWORD,
        [body("$.output_ThirdPartyReference", "", "to be equal to 'x'")],
        "verified",
        set(),
        id="echo-empty-in-4",
    ),
    pytest.param(
        HELD,
        [
            {
                "type": "BodyMismatch",
                "path": "$",
                "mismatch": "Actual map is missing the following keys: output_InsightReference",
            }
        ],
        "failed",
        set(),
        id="a-field-missing",
    ),
    pytest.param(
        GENERATION,
        [body("$.output_BankTransactionRef", "abc", "to match '^[!-~]{32}$'")],
        "failed",
        set(),
        id="bank-ref-3-chars",
    ),
    pytest.param(
        GENERATION,
        [body("$.output_BankTransactionRef", "", "to match '^[!-~]{32}$'")],
        "failed",
        set(),
        id="bank-ref-empty-in-0",
    ),
    pytest.param(
        GENERATION,
        [body("$.output_BankDateTime", "2019-06-11T22:32:10", "to match 'x'")],
        "failed",
        set(),
        id="bank-date-time",
    ),
]


@pytest.mark.parametrize(("description", "items", "expected", "warned_rows"), CASES)
def test_each_mismatch_is_judged_by_its_rule(description, items, expected, warned_rows):
    outcome = judged(description, *items)
    assert (outcome.status, rows(outcome)) == (expected, warned_rows), outcome
    assert len(outcome.warnings) == sum(f"row {row})" in w for w in outcome.warnings for row in warned_rows)
    for warning in outcome.warnings:
        assert warning.endswith(
            "(the harness's reading, docs/spec-notes.md row " + warning.rsplit("row ", 1)[1]
        )


def good_body(code: str = "0", reference: str = "B37D10E674EB7BE1") -> str:
    return json.dumps(
        {
            "output_ResponseCode": code,
            "output_ResponseDesc": "Success",
            "output_InsightReference": reference,
            "output_ThirdPartyReference": "71c6d1f93910052de053",
        }
    )


def test_a_body_labelled_text_plain_is_compared_by_the_harness_since_pact_does_not():
    # Only the label differs: a warning for it, and nothing else.
    outcome = judged(HELD, unread(good_body()), content_type("text/plain"))
    assert (outcome.status, outcome.problems, rows(outcome)) == ("warning", (), {18})
    assert len(outcome.warnings) == 1
    # A wrong code, a field missing, a body that is not JSON: failures all the same.
    outcome = judged(HELD, unread(good_body("-1")), content_type("text/plain"))
    assert outcome.status == "failed"
    assert outcome.problems == (
        """$.output_ResponseCode: received "-1", the contract expects it to be equal to '0'""",
    )
    without = json.loads(good_body())
    del without["output_InsightReference"]
    outcome = judged(HELD, unread(json.dumps(without)), content_type("text/plain"))
    assert outcome.problems == ("$: Actual map is missing the following keys: output_InsightReference",)
    assert judged(HELD, unread("Success"), content_type("text/plain")).status == "failed"
    assert judged(HELD, unread("[1]"), content_type("text/plain")).status == "failed"
    # Judged by the shared rules: a 36-character reference is a warning, an empty one in a refusal passes.
    outcome = judged(HELD, unread(good_body(reference=UUID)), content_type("text/plain"))
    assert (outcome.status, rows(outcome)) == ("warning", {18, 22})
    refusal = good_body("-9", reference="").replace("Success", "Transaction Details Not Found")
    assert rows(judged(UNKNOWN, unread(refusal), content_type("text/plain"))) == {18}
    # The reversal of a held token refused -1: which tokens may be reversed, a warning.
    refused = good_body("-1", reference="").replace("Success", "Failure: not redeemed")
    assert rows(judged(REVERSAL, unread(refused), content_type("text/plain"))) == {18, 26}
    # Without the contract at hand (a broker's pact the harness does not ship), a body not compared fails.
    outcome = judged(HELD, unread(good_body()), content_type("text/plain"), known=False)
    assert outcome.status == "failed"
    assert "the body was not compared" in outcome.problems[0]


def test_without_the_contract_an_empty_reference_is_judged_as_in_an_answer_0():
    # The code the interaction expects is unknown: the stricter reading, never a false pass.
    assert judged(UNKNOWN, body("$.output_InsightReference", ""), known=False).status == "failed"
    assert (
        judged(UNKNOWN, body("$.output_InsightReference", ""), code("-1", "-9"), known=False).status
        == "failed"
    )
    assert judged(UNKNOWN, body("$.output_InsightReference", ""), known=True).status == "verified"


def test_warnings_pass_the_report_unless_strict_and_are_counted(tmp_path):
    warned = judged(WRONG_PASSWORD, status(401))
    verified = InteractionOutcome(BANK, HELD, (), "verified")
    report = Report(IPG, "http://ipg.test", [], "http://ipg.test/s", interactions=[verified, warned])
    assert report.ok and report.warned == [warned]
    text = report.render()
    assert "2 interactions: 1 verified, 1 with warnings, 0 failed" in text
    assert f"  WARNING {WRONG_PASSWORD}  (consumer {BANK})" in text
    assert "            warning: status: expected 200 but was 401; left open by the document" in text
    report.strict = True
    assert not report.ok
    assert (
        "2 interactions: 1 verified, 1 with warnings, 0 failed (--strict: warnings fail)" in report.render()
    )
    failed = judged(HELD, code("-1", "0"))
    assert not Report(IPG, "u", [], "s", interactions=[verified, warned, failed]).ok


def test_spec_notes_say_how_both_tools_judge_each_warning_rule_of_the_table():
    """docs/spec-notes.md's section is the shared table: one line per rule with a row, no other."""
    from pathlib import Path

    notes = (Path(__file__).resolve().parents[2] / "docs" / "spec-notes.md").read_text(encoding="utf-8")
    heading = "## How the fuzzer and the verifier judge a partner where the document is silent"
    section = notes.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = {}
    for line in section.splitlines():
        found = re.match(r"^\| \(?(\d+)\)? \| .*? \| `(\w+)` \| (.+?) \| (.+?) \|$", line)
        if found:
            lines[found.group(2)] = int(found.group(1))
    assert lines == {rule.name: rule.row for rule in RULES.values() if rule.row}
    assert "`mpesa_atm.judgement`" in section
