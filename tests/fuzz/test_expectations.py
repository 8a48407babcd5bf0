"""The stateful run's model of a token, without HTTP: what the document says each answer must be."""

from __future__ import annotations

import pytest

from mpesa_atm import judgement
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


LISTED = TokenState(standing="listed")
UNKNOWN, EXPIRED = TokenState(standing="unknown"), TokenState(standing="expired")
SUCCESS_OR_NOT_FOUND = ({"0", "-9"}, set())

# What the document says of each step, the rule a finding is judged by, and the words it quotes.
RULES = [
    ("first_redemption_of_a_fresh_token", "redeem", FRESH, SUCCESS, "token_redeemable", "within 2 days"),
    ("first_redemption_of_a_listed_token", "redeem", LISTED, SUCCESS_OR_NOT_FOUND, "token_redeemable", "-9"),
    ("redemption_after_a_success", "redeem", REDEEMED, NOT_SUCCESS, "token_once", "redeemed at most once"),
    (
        "redemption_of_a_reversed_token",
        "redeem",
        REVERSED,
        NOT_SUCCESS,
        "token_once",
        "after it was reversed",
    ),
    ("replay_of_a_request_answered_success", "replay", REDEEMED, DUPLICATE, "duplicate", "same request"),
    (
        "another_amount_for_a_fresh_token",
        "redeem_other_amount",
        FRESH,
        NOT_SUCCESS,
        "token_details",
        "amount",
    ),
    (
        "another_amount_of_a_listed_token",
        "redeem_other_amount",
        LISTED,
        NOT_SUCCESS,
        "token_details",
        "amount",
    ),
    (
        "another_amount_for_a_redeemed_token",
        "redeem_other_amount",
        REDEEMED,
        NOT_SUCCESS,
        "token_details",
        "",
    ),
    (
        "another_msisdn_for_a_fresh_token",
        "redeem_other_msisdn",
        FRESH,
        NOT_SUCCESS,
        "token_details",
        "MSISDN",
    ),
    (
        "another_currency_for_a_fresh_token",
        "redeem_other_currency",
        FRESH,
        NOT_SUCCESS,
        "token_details",
        "currency",
    ),
    ("a_long_reference", "redeem_long_reference", FRESH, NOT_SUCCESS, "stated_limit", "Maximum of 32"),
    ("another_transaction_id", "reverse_other_transaction", FRESH, NOT_SUCCESS, "reversal_transaction", "G2"),
    (
        "another_transaction_id_redeemed",
        "reverse_other_transaction",
        REDEEMED,
        NOT_SUCCESS,
        "reversal_transaction",
        "",
    ),
    (
        "first_reversal_of_a_redeemed_token",
        "reverse",
        REDEEMED,
        SUCCESS,
        "reversible_tokens",
        "redeemed or not",
    ),
    (
        "first_reversal_of_an_unredeemed_token",
        "reverse",
        FRESH,
        SUCCESS,
        "reversible_tokens",
        "redeemed or not",
    ),
    ("second_reversal", "reverse", REVERSED, NOT_SUCCESS, "token_once", "reversed at most once"),
    (
        "second_reversal_of_a_redeemed_token",
        "reverse",
        TokenState(redeemed=True, reversed=True),
        NOT_SUCCESS,
        "token_once",
        "once",
    ),
    ("redemption_of_an_unknown_token", "redeem", UNKNOWN, NOT_FOUND, "unknown_token", "last 2 days"),
    ("reversal_of_an_unknown_token", "reverse", UNKNOWN, NOT_FOUND, "unknown_token", "last 2 days"),
    (
        "another_msisdn_of_an_unknown_token",
        "redeem_other_msisdn",
        UNKNOWN,
        NOT_SUCCESS,
        "unknown_token",
        "-9",
    ),
    ("redemption_of_an_expired_token", "redeem", EXPIRED, NOT_FOUND, "token_window", "last 2 days"),
    ("another_amount_of_an_expired_token", "redeem_other_amount", EXPIRED, NOT_SUCCESS, "token_window", "48"),
    (
        "long_reference_of_an_expired_token",
        "redeem_long_reference",
        EXPIRED,
        NOT_SUCCESS,
        "token_window",
        "48",
    ),
    ("reversal_of_an_expired_token", "reverse", EXPIRED, NOT_FOUND, "token_window", "last 2 days"),
    (
        "replay_of_a_success_for_a_token_not_found",
        "replay",
        TokenState(standing="unknown", last_code="0"),
        DUPLICATE,
        "duplicate",
        "",
    ),
]


@pytest.mark.parametrize(
    ("action", "state", "codes", "rule", "words"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_the_document_says_what_each_step_must_be_answered(action, state, codes, rule, words):
    expectation = expect(action, state)

    assert _codes(expectation) == codes
    assert expectation is not None and expectation.rule == rule and words in expectation.documented
    # The finding says where the rule comes from, and is judged by it.
    assert expectation.documented.endswith(f"({judgement.RULES[rule].source})")
    assert expectation.severity == judgement.RULES[rule].severity


def test_only_which_tokens_may_be_reversed_is_a_warning():
    warned = {
        (action, state)
        for action in ACTIONS
        for state in (FRESH, LISTED, REDEEMED, REVERSED, UNKNOWN, EXPIRED)
        if (expectation := expect(action, state)) is not None and expectation.severity == "warning"
    }

    assert warned == {("reverse", FRESH), ("reverse", LISTED), ("reverse", REDEEMED)}


@pytest.mark.parametrize(
    ("action", "state"),
    [
        ("replay", FRESH),  # nothing was sent yet
        ("replay", TokenState(last_code="-1")),
        ("replay", TokenState(last_code="-9")),
        ("replay", TokenState(last_code=None)),  # the answer had no code
    ],
    ids=[
        "replay-before-any-request",
        "replay-of-a-refusal",
        "replay-of-not-found",
        "replay-of-no-code",
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
        # Paid is paid: a probe answered 0 spent the token, and a second payment is token_once's.
        (FRESH, "redeem_other_amount", "0", TokenState(redeemed=True, last_code="0")),
        (FRESH, "redeem_other_msisdn", "0", TokenState(redeemed=True, last_code="0")),
        (FRESH, "redeem_long_reference", "0", TokenState(redeemed=True, last_code="0")),
        (FRESH, "reverse_other_transaction", "0", TokenState(reversed=True, last_code="0")),
        (FRESH, "redeem_other_currency", "-1", TokenState(last_code="-1")),
        (REDEEMED, "reverse", "0", TokenState(redeemed=True, reversed=True, last_code="0")),
        (REDEEMED, "reverse", "-1", TokenState(redeemed=True, last_code="-1")),
        (TokenState(redeemed=True, last_code="-1"), "replay", "0", TokenState(redeemed=True, last_code="-1")),
        # A listed token: known once the iPG answers for it, unknown when it answers -9 to its first
        # redemption with its own details; a probe's refusal says neither.
        (LISTED, "redeem", "0", TokenState(redeemed=True, last_code="0")),
        (LISTED, "redeem", "-9", TokenState(standing="unknown", last_code="-9")),
        (LISTED, "redeem", "-1", TokenState(last_code="-1")),
        (LISTED, "reverse", "-1", TokenState(last_code="-1")),
        (LISTED, "reverse", "-9", TokenState(standing="listed", last_code="-9")),
        (LISTED, "redeem_other_msisdn", "-1", TokenState(standing="listed", last_code="-1")),
        (LISTED, "redeem_other_msisdn", "-9", TokenState(standing="listed", last_code="-9")),
        (
            TokenState(standing="listed", reversed=True),
            "redeem",
            "-9",
            TokenState(standing="listed", reversed=True, last_code="-9"),
        ),
    ],
    ids=[
        "redeemed",
        "refused-redemption",
        "redemption-without-code",
        "other-amount-paid",
        "other-msisdn-paid",
        "long-reference-paid",
        "other-transaction-reversed",
        "other-currency-refused",
        "reversed",
        "refused-reversal",
        "replay-changes-nothing",
        "listed-paid",
        "listed-not-found",
        "listed-refused",
        "listed-reversal-refused",
        "listed-reversal-not-found",
        "listed-probe-refused",
        "listed-probe-not-found",
        "listed-reversed-then-not-found",
    ],
)
def test_an_answer_moves_the_token_on(state, action, code, after):
    assert advance(state, action, code) == after


def test_a_lifecycle_walks_through_the_documents_answers():
    steps = [  # action, the answer a correct iPG gives, what the model expects before it
        ("redeem_other_msisdn", "-1", NOT_SUCCESS),
        ("redeem_long_reference", "-1", NOT_SUCCESS),
        ("redeem", "0", SUCCESS),
        ("replay", "-3", DUPLICATE),
        ("redeem", "-1", NOT_SUCCESS),
        ("replay", "-3", None),
        ("reverse_other_transaction", "-9", NOT_SUCCESS),
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
        for standing in ("valid", "listed", "unknown", "expired")
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


def test_a_replay_of_a_request_not_found_is_held_to_what_the_request_was():
    not_found = TokenState(standing="unknown", last_code="-9")
    assert _codes(expect("replay", not_found, "redeem")) == NOT_FOUND
    assert _codes(expect("replay", TokenState(standing="expired", last_code="-9"), "redeem")) == NOT_FOUND
    # A token the iPG knows: a refused request sent again may be taken for a new one.
    assert expect("replay", TokenState(last_code="-1"), "redeem") is None


def test_a_refused_request_paid_when_replayed_spends_the_token():
    refused = TokenState(last_code="-1")
    assert advance(refused, "replay", "0", "redeem") == TokenState(redeemed=True, last_code="-1")
    assert advance(refused, "replay", "0", "reverse") == TokenState(reversed=True, last_code="-1")
    assert advance(refused, "replay", "-3", "redeem") == refused
    assert advance(REDEEMED, "replay", "0", "redeem") == REDEEMED  # the duplicate check's to judge
