"""How `mpesa-atm verify` words what Pact's verifier found, from the verifier's JSON results."""

from __future__ import annotations

from mpesa_atm.contracts.report import InteractionOutcome, Report, StateFailure, outcomes


def result(mismatch: dict | None, *, pending: bool = False) -> dict:
    return {
        "interactionResults": [
            {
                "consumer": "generic-atm-ipg",
                "description": "a token generation that repeats one already made",
                "providerStates": ["a token was generated for the transaction"],
                "mismatch": mismatch,
                "pending": pending,
            }
        ]
    }


def problems(mismatch: dict, failures: list[StateFailure] = ()) -> tuple[str, ...]:
    (outcome,) = outcomes(result(mismatch), list(failures))
    return outcome.problems


def test_a_value_mismatch_says_what_was_received_and_what_the_contract_expects():
    mismatch = {
        "type": "mismatches",
        "mismatches": [
            {
                "type": "BodyMismatch",
                "path": "$.output_ResponseCode",
                "actual": '"0"',
                "expected": '"-3"',
                "mismatch": "Expected '0' (String) to be equal to '-3' (String)",
            },
            {
                "type": "BodyMismatch",
                "path": "$.output_BankTransactionRef",
                "actual": '"abc"',
                "expected": '"12345678123412341234123456789abc"',
                "mismatch": "Expected 'abc' to match '^[!-~]{32}$'",
            },
        ],
    }
    assert problems(mismatch) == (
        """$.output_ResponseCode: received "0", the contract expects it to be equal to '-3' (String)""",
        """$.output_BankTransactionRef: received "abc", the contract expects it to match '^[!-~]{32}$'""",
    )


def test_other_mismatches_keep_pacts_words():
    mismatch = {
        "type": "mismatches",
        "mismatches": [
            {
                "type": "StatusMismatch",
                "expected": 200,
                "actual": 500,
                "mismatch": "expected 200 but was 500",
            },
            {"type": "HeaderMismatch", "key": "Content-Type", "mismatch": "Expected header 'Content-Type'"},
            {"type": "BodyMismatch", "path": "$", "mismatch": "Actual map is missing the following keys: x"},
        ],
    }
    (outcome,) = outcomes(result(mismatch), [])
    assert outcome.status == "failed"
    assert outcome.problems == (
        "status: expected 200 but was 500",
        "$: Actual map is missing the following keys: x",
    )
    # The Content-Type is a point the document leaves open: a warning beside the failures.
    assert outcome.warnings == (
        "header Content-Type: Expected header 'Content-Type'; left open by the document: answers "
        "labelled application/json (the harness's reading, docs/spec-notes.md row 18)",
    )


def test_a_failed_state_change_is_explained_by_the_providers_reason():
    refused = StateFailure(
        "a token was generated for the transaction", "setup", {"amount": "x"}, "HTTP 404 why"
    )
    elsewhere = StateFailure("a token exists", "setup", {}, "HTTP 404 not this one")
    mismatch = {"type": "error", "message": "One or more of the setup state change handlers has failed"}
    assert problems(mismatch, [refused, refused, elsewhere]) == (
        "One or more of the setup state change handlers has failed",
        'setup of provider state \'a token was generated for the transaction\' {"amount": "x"}: HTTP 404 why',
    )


def test_a_pending_failure_is_reported_but_does_not_fail_the_verification():
    mismatch = {"type": "error", "message": "boom"}
    (outcome,) = outcomes(result(mismatch, pending=True), [])
    assert outcome.status == "pending"
    report = Report("generic-atm-bank", "http://x", [], "http://x/s", interactions=[outcome])
    assert report.ok
    assert "1 interaction: 0 verified, 0 with warnings, 0 failed, 1 pending" in report.render()


def test_a_report_with_no_interaction_is_not_a_success():
    assert not Report("generic-atm-bank", "http://x", [], "http://x/s").ok
    verified = InteractionOutcome("c", "d", (), "verified")
    assert Report("generic-atm-bank", "http://x", [], "http://x/s", interactions=[verified]).ok
