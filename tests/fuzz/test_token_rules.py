"""The token's whole rule with --tokens (issue 22, item 3): iPGs written from the document with ONE bug
each (tests/fuzz/lenient.py's `bug`) fail a default campaign on many seeds, naming the rule they break;
a tokens file the iPG knows none of leaves the partner untested (exit 2); tokens issued more than 2 days
ago are only ever sent the redemption that must be -9."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mpesa_atm import judgement
from mpesa_atm.fuzz import Credentials, Target, render_finding, run_campaign
from mpesa_atm.fuzz.stateful import EXPIRED_PLAN, PLANS
from mpesa_atm.fuzz.tokens import KNOWN_COLUMNS, Token, read_tokens
from tests.fixtures.seeds import seeds
from tests.fuzz.lenient import PASSWORD, USERNAME, Partner, serving
from tests.fuzz.test_lenient_partners import _fresh

SEEDS = seeds()  # four a Python, others on each: tests/fixtures/seeds.py
EXAMPLES = 4  # the lifecycles of a tokens file do not depend on it: few cases for the other phases
CREDENTIALS = Credentials(USERNAME, PASSWORD, "49272")
NOW = datetime.now(UTC)


def _token(index: int, issued_at: datetime | None = None, *, tag: str = "a") -> Token:
    return Token(
        f"{tag}{index:03d}".ljust(32, "c"),
        f"BVA{index:04d}{tag.upper()}X",
        f"24384333{index:04d}",
        f"{200 + index}",
        "USD",
        issued_at,
    )


def _campaign(partner: Partner, tokens: list[Token], seed: int, known: list[Token] | None = None):
    """A default campaign of `partner` spending `tokens`, the partner knowing `known` (default: all)."""
    partner = _fresh(partner)
    partner.tokens.update(
        {token.bank_transaction_ref: token for token in (tokens if known is None else known)}
    )
    with serving(partner) as url:
        target = Target("ipg", url=url, credentials=CREDENTIALS)
        return run_campaign(target, max_examples=EXAMPLES, seed=seed, tokens=tokens, currencies=("USD",))


def _about(result, token: Token) -> list:
    """The cases of `result` that name `token`."""
    return [
        case
        for case in result.sent
        if isinstance(case.body, dict)
        and case.body.get("input_BankTransactionRef") == token.bank_transaction_ref
    ]


def _shown(result) -> str:
    return "\n\n".join(render_finding(finding) for finding in result.findings)


# Within 2 days (one said, one not), and one issued 3 days ago.
TOKENS = [
    _token(1, NOW - timedelta(hours=1)),
    _token(2),
    _token(3, NOW - timedelta(days=3)),
]

# Each bug, the rule it breaks, and the words of the finding's title.
BUGS = {
    "pays_other_msisdn": ("token_details", "paid for another MSISDN"),
    "reverses_other_transaction": ("reversal_transaction", "another input_TransactionID"),
    "pays_expired": ("token_window", "more than 2 days ago was not answered Not Found"),
    "pays_long_reference": ("stated_limit", "over 32 characters was paid"),
}
# Other checks the same bug may trip (a long reference paid is echoed cut, or not at all).
ALSO = {"pays_long_reference": {"third_party_reference_echoed"}}


@pytest.mark.network
@pytest.mark.parametrize("bug", BUGS)
def test_an_ipg_with_one_lifecycle_bug_fails_every_seed_naming_the_rule(bug):
    rule, words = BUGS[bug]
    for seed in SEEDS:
        result = _campaign(Partner("ipg", bug=bug), TOKENS, seed)

        failed = {finding.check for finding in result.failures}
        assert result.exit_code == 1 and "token_lifecycle" in failed, f"seed {seed}:\n{_shown(result)}"
        assert failed <= {"token_lifecycle"} | ALSO.get(bug, set()), f"seed {seed}:\n{_shown(result)}"
        (finding,) = [f for f in result.failures if f.check == "token_lifecycle"]
        assert words in finding.title, f"seed {seed}:\n{_shown(result)}"
        documented = finding.message.split("Documented: ", 1)[1]
        assert documented.endswith(f"({judgement.RULES[rule].source})"), finding.message
        assert result.untested is None


@pytest.mark.network
@pytest.mark.parametrize("reversible", ["redeemed", "unredeemed", "any"])
def test_a_correct_ipg_passes_with_expired_tokens_whichever_tokens_it_reverses(reversible):
    for seed in SEEDS:
        result = _campaign(Partner("ipg", reversible=reversible), TOKENS, seed)

        assert result.exit_code == 0 and not result.failures, f"seed {seed}:\n{_shown(result)}"
        assert result.exercised.get("token_lifecycle"), seed
        reversal_warnings = [
            f for f in result.warnings if f.title == "The first reversal of a token was refused"
        ]
        # The harness reverses both kinds: a partner that reverses one kind only is told, as a warning.
        assert bool(reversal_warnings) == (reversible != "any"), _shown(result)
        for finding in reversal_warnings:
            assert finding.message.endswith(f"({judgement.RULES['reversible_tokens'].source})")


@pytest.mark.network
def test_an_expired_token_is_sent_only_the_redemption_that_must_be_not_found():
    result = _campaign(Partner("ipg"), TOKENS, seed=1)

    assert result.exit_code == 0, _shown(result)
    sent: dict[str, list[str]] = {}
    for case in result.sent:
        if case.phase == "stateful" and case.kind != "unknown_token":
            sent.setdefault(case.body["input_BankTransactionRef"], []).append(case.kind)
    assert [sent[token.bank_transaction_ref] for token in TOKENS] == [
        list(plan) for plan in (*PLANS, EXPIRED_PLAN)
    ]
    (expired,) = _about(result, TOKENS[2])
    assert {key: expired.body[key] for key in ("input_CustomerMSISDN", "input_Amount", "input_Currency")} == {
        "input_CustomerMSISDN": TOKENS[2].msisdn,
        "input_Amount": TOKENS[2].amount,
        "input_Currency": TOKENS[2].currency,
    }
    assert any("1 of the tokens were issued more than 2 days ago" in note for note in result.notes)


@pytest.mark.network
def test_a_token_issued_about_2_days_ago_is_not_sent():
    edge = _token(4, NOW - timedelta(hours=48, minutes=10))
    result = _campaign(Partner("ipg", bug="pays_expired"), [*TOKENS[:2], edge], seed=1)

    assert result.exit_code == 0, _shown(result)  # the only token the bug could pay was left alone
    assert not _about(result, edge)
    assert any("issued about 2 days ago" in note for note in result.notes), result.notes


@pytest.mark.parametrize("reversible", ["redeemed", "unredeemed"])
@pytest.mark.network
def test_a_tokens_file_the_ipg_knows_none_of_leaves_it_untested(tmp_path, reversible):
    tokens = [_token(index) for index in range(3)]
    path = tmp_path / "tokens.csv"
    path.write_text(
        "\n".join([",".join(KNOWN_COLUMNS[:5]), *(",".join(_values(token)) for token in tokens)]) + "\n"
    )

    result = _campaign(Partner("ipg", reversible=reversible), list(read_tokens(path)), seed=1, known=[])

    assert result.exit_code == 2 and not result.failures, _shown(result)
    assert result.untested == (
        f"none of the 3 tokens of {path} is known to the iPG: every redemption answered -9; are they from"
        " this iPG's sandbox, for this username, within 2 days?"
    )


@pytest.mark.network
def test_one_known_token_is_enough_to_test_and_the_others_are_named(tmp_path):
    tokens = [_token(index) for index in range(3)]
    result = _campaign(Partner("ipg"), tokens, seed=1, known=tokens[1:2])

    assert result.exit_code == 0 and result.untested is None, _shown(result)
    assert any("2 of the 3 tokens within 2 days are not known to the iPG" in note for note in result.notes)


@pytest.mark.network
def test_an_ipg_that_pays_a_token_after_saying_it_does_not_know_it_fails():
    # It answers -9 to the first redemption with the token's own details, then pays the same token (a
    # bug no lenient option has: the partner learns the token between the two).
    partner = Partner("ipg")
    token = _token(7)
    original = partner._redeem

    def learning(raw: bytes, media_type: str, fields: dict[str, str]) -> dict[str, str]:
        try:
            return original(raw, media_type, fields)
        finally:
            own = (token.msisdn, token.amount, token.currency)
            if (
                fields.get("input_CustomerMSISDN"),
                fields.get("input_Amount"),
                fields.get("input_Currency"),
            ) == own:
                partner.tokens[token.bank_transaction_ref] = token

    partner._redeem = learning  # type: ignore[method-assign]
    with serving(partner) as url:
        result = run_campaign(
            Target("ipg", url=url, credentials=CREDENTIALS),
            max_examples=EXAMPLES,
            seed=1,
            tokens=[token, _token(8)],
            currencies=("USD",),
        )

    assert result.exit_code == 1, _shown(result)
    assert any("did not know was" in f.title for f in result.failures), _shown(result)


def _values(token: Token) -> list[str]:
    return [getattr(token, column) for column in KNOWN_COLUMNS[:5]]


# The file's issued_at column -------------------------------------------------------------------------


def _write(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_issued_at_is_read_with_its_zone_and_may_be_left_empty(tmp_path):
    header = "issued_at,bank_transaction_ref,transaction_id,msisdn,amount,currency"
    path = _write(
        tmp_path / "tokens.csv",
        header,
        "2026-12-01T09:30:00Z,abc1,BVA1,243810000001,200,CDF",
        "2026-12-01T11:30:00+02:00,abc2,BVA2,243810000002,200,CDF",
        ",abc3,BVA3,243810000003,200,CDF",
    )

    tokens = read_tokens(path)

    assert [token.issued_at for token in tokens] == [
        datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        None,
    ]
    assert tokens[1].source == f"{path} line 3"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("2026-12-01T09:30:00", "line 2: column 6: issued_at '2026-12-01T09:30:00' has no time zone"),
        ("yesterday", "line 2: column 6: issued_at 'yesterday' is not an ISO 8601 date and time"),
    ],
)
def test_issued_at_without_a_zone_is_a_usage_error_naming_line_and_column(tmp_path, value, said):
    from mpesa_atm.errors import UsageError

    header = "bank_transaction_ref,transaction_id,msisdn,amount,currency,issued_at"
    path = _write(tmp_path / "tokens.csv", header, f"abc1,BVA1,243810000001,200,CDF,{value}")

    with pytest.raises(UsageError) as raised:
        read_tokens(path)

    assert said in str(raised.value) and "e.g. 2026-12-01T09:30:00Z" in str(raised.value)


@pytest.mark.network
def test_unknown_columns_are_read_past_with_a_note_naming_the_known_ones(tmp_path):
    header = "bank_transaction_ref,branch,transaction_id,msisdn,amount,currency,teller"
    path = _write(tmp_path / "tokens.csv", header, "abc1,Gombe,BVA1,243810000001,200,USD,J. K.")
    tokens = read_tokens(path)
    assert tokens == (Token("abc1", "BVA1", "243810000001", "200", "USD"),)

    partner = Partner("ipg")
    partner.tokens.update({token.bank_transaction_ref: token for token in tokens})
    with serving(partner) as url:
        result = run_campaign(
            Target("ipg", url=url, credentials=CREDENTIALS), max_examples=2, seed=1, tokens=tokens
        )

    assert (
        f"stateful: {path}: the columns branch, teller are not read (the known ones: bank_transaction_ref,"
        " transaction_id, msisdn, amount, currency, issued_at)"
    ) in result.notes


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ("bank_transaction_ref,transaction_id,msisdn,amount", "(no currency)"),
        ("bank_transaction_ref,transaction_id,msisdn,amount,currency,amount", "(amount twice)"),
    ],
)
def test_a_header_without_a_known_column_or_with_one_twice_is_refused(tmp_path, header, said):
    from mpesa_atm.errors import UsageError

    path = _write(tmp_path / "tokens.csv", header, "abc1,BVA1,243810000001,200,USD")
    with pytest.raises(UsageError) as raised:
        read_tokens(path)
    assert "line 1: the header must name" in str(raised.value) and said in str(raised.value)


def test_the_age_of_a_token_is_judged_at_the_clock_given():
    from mpesa_atm.fuzz.tokens import age_of

    issued = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    token = _token(1, issued)
    at = [issued + timedelta(hours=hours) for hours in (0, 46.9, 47, 48, 49, 49.01)]
    assert [age_of(token, now) for now in at] == ["valid", "valid", "edge", "edge", "edge", "expired"]
    assert age_of(_token(1), issued + timedelta(days=30)) == "valid"  # not said: taken as within 2 days
    assert json.dumps(str(token.issued_at))  # a datetime, not the file's text


# What the stateful phase says of the tokens it made --------------------------------------------------


def _refusing(app, refused: dict[str, int]):
    """`app` with the control API's paths of `refused` answered with their status (503: a store out of
    reach; a 401 or 403 is no such case, it ends the campaign: test_coverage), everything else served."""

    async def refusing(scope, receive, send):
        status = refused.get(scope.get("path", "")) if scope["type"] == "http" else None
        if status is None:
            await app(scope, receive, send)
            return
        body = json.dumps({"error": "Service Unavailable"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return refusing


@pytest.mark.parametrize(
    ("refused", "said", "not_said"),
    [
        (
            {"/_harness/withdrawals": 503, "/_harness/tokens": 503},
            "made no token for a lifecycle: /_harness/withdrawals answered 503, /_harness/tokens answered"
            " 503; those lifecycles were not run",
            "tokens were seeded",
        ),
        (
            {"/_harness/withdrawals": 502},
            "could not have a bank generate tokens (/_harness/withdrawals answered 502); tokens were seeded"
            " with /_harness/tokens",
            "made no token",
        ),
    ],
    ids=["both-refused", "seeded"],
)
def test_the_stateful_phase_says_how_its_tokens_were_made_never_more(
    mocks, credentials, refused, said, not_said
):
    app = _refusing(mocks.ipg_app, refused)

    result = run_campaign(Target("ipg", app=app, credentials=credentials), max_examples=3, seed=1)

    stateful = [note for note in result.notes if note.startswith("stateful: ")]
    assert [note for note in stateful if said in note], result.notes
    assert not [note for note in stateful if not_said in note], result.notes
    lifecycles = [case for case in result.sent if case.phase == "stateful" and case.kind != "unknown_token"]
    assert bool(lifecycles) == ("/_harness/tokens" not in refused)


@pytest.mark.network
@pytest.mark.usefixtures("fuzz_command_in_process")
def test_fuzz_exits_2_when_the_ipg_knows_none_of_the_tokens(tmp_path, capsys):
    from mpesa_atm.cli import main

    path = _write(
        tmp_path / "tokens.csv",
        ",".join(KNOWN_COLUMNS),
        *(",".join([*_values(_token(index)), ""]) for index in range(2)),
    )
    with serving(Partner("ipg")) as url:  # it knows no token
        code = main(
            ["fuzz", "ipg", "--url", url, "--tokens", str(path), "--max-examples", "2", "--seed", "1"]
        )

    out = capsys.readouterr().out
    assert code == 2, out
