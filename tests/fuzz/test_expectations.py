"""The stateful run's model of a token, without HTTP: what the document says each answer must be."""

from __future__ import annotations

import pytest

from mpesa_atm.fuzz.expectations import ACTIONS, Expectation, TokenState, advance, expect

FRESH = TokenState()
REDEEMED = TokenState(redeemed=True, last_code="0")
REVERSED = TokenState(reversed=True, last_code="0")
SUCCESS, NOT_SUCCESS, DUPLICATE, NOT_FOUND = ({"0"}, set()), (set(), {"0"}), ({"-3"}, set()), ({"-9"}, set())


def _codes(expectation: Expectation | None) -> tuple[set[str], set[str]] | None:
    """(must be one of, must not be) of an expectation; None where the document leaves it open."""
    if expectation is None:
        return None
    return set(expectation.codes), set(expectation.not_codes)


# What the document says of each step, and the words of the rule a finding quotes.
RULES = [
    ("first_redemption_of_a_fresh_token", "redeem", FRESH, SUCCESS, "generated within 2 days"),
    (
        "redemption_with_another_reference_after_a_success",
        "redeem",
        REDEEMED,
        NOT_SUCCESS,
        "redeemed at most once",
    ),
    ("redemption_of_a_reversed_token", "redeem", REVERSED, NOT_SUCCESS, "never after it was reversed"),
    ("replay_of_a_request_answered_success", "replay", REDEEMED, DUPLICATE, "duplicate check"),
    ("another_amount_for_a_fresh_token", "redeem_other_amount", FRESH, NOT_SUCCESS, "(2.1.2.1)"),
    ("another_amount_for_a_redeemed_token", "redeem_other_amount", REDEEMED, NOT_SUCCESS, "(2.1.2.1)"),
    ("first_reversal_of_a_redeemed_token", "reverse", REDEEMED, SUCCESS, "G2 TransactionID"),
    ("second_reversal", "reverse", REVERSED, NOT_SUCCESS, "reversed at most once"),
    (
        "second_reversal_of_a_redeemed_token",
        "reverse",
        TokenState(redeemed=True, reversed=True),
        NOT_SUCCESS,
        "once",
    ),
    ("redemption_of_an_unknown_token", "redeem", TokenState(standing="unknown"), NOT_FOUND, "last 2 days"),
    ("reversal_of_an_unknown_token", "reverse", TokenState(standing="unknown"), NOT_FOUND, "last 2 days"),
    ("redemption_of_an_expired_token", "redeem", TokenState(standing="expired"), NOT_FOUND, "last 2 days"),
    (
        "another_amount_of_an_expired_token",
        "redeem_other_amount",
        TokenState(standing="expired"),
        NOT_FOUND,
        "2 days",
    ),
    ("reversal_of_an_expired_token", "reverse", TokenState(standing="expired"), NOT_FOUND, "last 2 days"),
    (
        "replay_of_a_success_for_a_token_not_found",
        "replay",
        TokenState(standing="unknown", last_code="0"),
        DUPLICATE,
        "",
    ),
]


@pytest.mark.parametrize(
    ("action", "state", "codes", "words"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_the_document_says_what_each_step_must_be_answered(action, state, codes, words):
    expectation = expect(action, state)

    assert _codes(expectation) == codes
    assert expectation is not None and words in expectation.documented


@pytest.mark.parametrize(
    ("action", "state"),
    [
        ("replay", FRESH),  # nothing was sent yet
        ("replay", TokenState(last_code="-1")),
        ("replay", TokenState(last_code="-9")),
        ("replay", TokenState(last_code=None)),  # the answer had no code
        ("reverse", FRESH),  # may a token never redeemed be reversed? The document does not say
    ],
    ids=[
        "replay-before-any-request",
        "replay-of-a-refusal",
        "replay-of-not-found",
        "replay-of-no-code",
        "reverse-unused",
    ],
)
def test_where_the_document_is_silent_any_answer_goes(action, state):
    assert expect(action, state) is None


@pytest.mark.parametrize(
    ("state", "action", "code", "after"),
    [
        (FRESH, "redeem", "0", TokenState(redeemed=True, last_code="0")),
        (FRESH, "redeem", "-1", TokenState(last_code="-1")),
        (FRESH, "redeem", None, TokenState()),
        (FRESH, "redeem_other_amount", "0", TokenState(last_code="0")),  # not the token's own redemption
        (REDEEMED, "reverse", "0", TokenState(redeemed=True, reversed=True, last_code="0")),
        (REDEEMED, "reverse", "-1", TokenState(redeemed=True, last_code="-1")),
        (TokenState(redeemed=True, last_code="-1"), "replay", "0", TokenState(redeemed=True, last_code="-1")),
    ],
    ids=[
        "redeemed",
        "refused-redemption",
        "redemption-without-code",
        "other-amount-success",
        "reversed",
        "refused-reversal",
        "replay-changes-nothing",
    ],
)
def test_an_answer_moves_the_token_on(state, action, code, after):
    assert advance(state, action, code) == after


def test_a_lifecycle_walks_through_the_documents_answers():
    steps = [  # action, the answer a correct iPG gives, what the model expects before it
        ("redeem", "0", SUCCESS),
        ("replay", "-3", DUPLICATE),
        ("redeem", "-1", NOT_SUCCESS),
        ("replay", "-3", None),
        ("reverse", "0", SUCCESS),
        ("reverse", "-1", NOT_SUCCESS),
        ("redeem_other_amount", "-1", NOT_SUCCESS),
    ]
    state = TokenState()
    seen = []
    for action, answer, _ in steps:
        seen.append(_codes(expect(action, state)))
        state = advance(state, action, answer)

    assert seen == [expected for _, _, expected in steps]
    assert state == TokenState(redeemed=True, reversed=True, last_code="-1")


@pytest.mark.parametrize(
    ("expectation", "code", "allowed"),
    [
        (Expectation(codes=frozenset({"0"})), "0", True),
        (Expectation(codes=frozenset({"0"})), "-1", False),
        (Expectation(codes=frozenset({"0"})), None, False),
        (Expectation(not_codes=frozenset({"0"})), "-1", True),
        (Expectation(not_codes=frozenset({"0"})), None, True),
        (Expectation(not_codes=frozenset({"0"})), "0", False),
    ],
)
def test_an_expectation_allows_the_codes_it_names_and_no_other(expectation, code, allowed):
    assert expectation.allows(code) is allowed


def test_every_action_in_every_state_has_a_documented_rule_or_none():
    states = [
        TokenState(standing=standing, redeemed=redeemed, reversed=reversed_, last_code=code)
        for standing in ("valid", "unknown", "expired")
        for redeemed in (False, True)
        for reversed_ in (False, True)
        for code in (None, "0", "-1")
    ]

    for state in states:
        for action in ACTIONS:
            expectation = expect(action, state)
            assert expectation is None or (
                expectation.documented and (expectation.codes or expectation.not_codes)
            )
