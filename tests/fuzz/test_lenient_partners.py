"""No false positives: correct partners that read the document otherwise than we do (tests/fuzz/lenient.py)
pass every campaign, over many seeds, with warnings where they are laxer than our choices; and a
campaign pointed at something that is not the role's API stops with one line instead of findings."""

from __future__ import annotations

import dataclasses
import secrets
import threading

import pytest

from mpesa_atm.errors import WrongTarget
from mpesa_atm.fuzz import Credentials, Target, render_finding, run_campaign
from mpesa_atm.fuzz.tokens import Token
from tests.fixtures.seeds import seeds
from tests.fuzz.lenient import PASSWORD, USERNAME, Partner, serving

SEEDS = seeds()  # four a Python, others on each: tests/fixtures/seeds.py
# Enough cases per seed for every phase to run (edges, boundaries, realistic, generated, lifecycles),
# few enough for the seeds of each partner to take seconds.
EXAMPLES = 8
CREDENTIALS = Credentials(USERNAME, PASSWORD, "49272")

PARTNERS = {
    "bank ignoring the Content-Type": Partner("bank", content_type="ignore", refusal_status=400),
    "bank refusing with HTTP 200": Partner("bank", content_type="require", refusal_status=200),
    "bank stricter than our formats": Partner("bank", content_type="require", formats="strict"),
    "iPG echoing whatever it got, not found with HTTP 404": Partner(
        "ipg", echo="whatever", refusal_status=400, not_found_status=404
    ),
    "iPG refusing with HTTP 200, ignoring the Content-Type": Partner("ipg", refusal_status=200),
    "iPG stricter than our formats": Partner("ipg", content_type="require", formats="strict"),
    # Which tokens may be reversed is the harness's reading (spec-notes rows 12 and 26): each is correct.
    "iPG reversing only redeemed tokens": Partner("ipg", reversible="redeemed"),
    "iPG reversing only unredeemed tokens": Partner("ipg", reversible="unredeemed"),
    "iPG reversing any token once": Partner("ipg", reversible="any"),
    "iPG answering -4/-5 with HTTP 401/403": Partner("ipg", auth_status=401),
    "iPG with a 36-character InsightReference (a UUID)": Partner("ipg", insight_length=36),
}


def _tokens(partner: Partner, count: int) -> list[Token]:
    """Tokens the partner knows, in the formats it takes, as the partner's sandbox would list them."""
    tokens = [
        Token(secrets.token_hex(16), f"TX{secrets.token_hex(5).upper()}", "243843330333", "200", "USD")
        for _ in range(count)
    ]
    partner.tokens.update({token.bank_transaction_ref: token for token in tokens})
    return tokens


def _fresh(partner: Partner) -> Partner:
    """A partner of the same reading, with none of the other's tokens and transactions."""
    return dataclasses.replace(
        partner,
        tokens={},
        _lock=threading.Lock(),
        _answered={},
        _transactions={},
        _state={},
        answered=0,
        busy=threading.Event(),
    )


@pytest.mark.network
@pytest.mark.parametrize("name", PARTNERS)
def test_a_correct_partner_passes_every_seed(name):
    lenient = name != "bank stricter than our formats" and name != "iPG stricter than our formats"
    warned: set[str] = set()
    for seed in SEEDS:
        partner = _fresh(PARTNERS[name])
        with serving(partner) as url:
            ipg = partner.role == "ipg"
            target = Target(partner.role, url=url, credentials=CREDENTIALS if ipg else None)
            tokens = _tokens(partner, EXAMPLES) if ipg else []
            result = run_campaign(
                target, max_examples=EXAMPLES, seed=seed, tokens=tokens, currencies=("USD",)
            )
        shown = "\n\n".join(render_finding(finding) for finding in result.failures)
        assert result.exit_code == 0 and not result.failures, f"seed {seed}:\n{shown}"
        warned |= {finding.check for finding in result.warnings}
        if ipg:
            assert "stateful" in result.phases and result.exercised.get("token_lifecycle"), seed
    if lenient:
        # Laxer than us somewhere, and told so.
        assert warned, f"{name}: no warning in {len(SEEDS)} seeds"


@pytest.mark.network
def test_strict_fails_a_lenient_partner_on_its_warnings():
    partner = _fresh(PARTNERS["bank ignoring the Content-Type"])
    with serving(partner) as url:
        result = run_campaign(Target("bank", url=url), max_examples=EXAMPLES, seed=1, strict=True)
    assert result.warnings and not result.failures
    assert result.exit_code == 1
    # Left out, the checks that warn leave nothing to fail on.
    partner = _fresh(PARTNERS["bank ignoring the Content-Type"])
    with serving(partner) as url:
        result = run_campaign(
            Target("bank", url=url),
            max_examples=EXAMPLES,
            seed=1,
            strict=True,
            exclude_checks=sorted({finding.check for finding in result.warnings}),
        )
    assert result.exit_code == 0, [render_finding(f) for f in result.findings]


@pytest.mark.network
@pytest.mark.parametrize(
    ("role", "served", "paths", "answered"),
    [
        ("bank", "ipg", {}, "HTTP 404"),
        ("ipg", "bank", {}, "HTTP 404"),
        (
            "ipg",
            "bank",
            {"token_redemption": "/token-generation"},
            "the bank's answer (output_BankDateTime, output_BankTransactionRef)",
        ),
    ],
    ids=["bank-campaign-at-an-ipg", "ipg-campaign-at-a-bank", "ipg-campaign-at-a-bank-path"],
)
def test_a_campaign_at_the_wrong_target_stops_and_says_what_to_check(role, served, paths, answered):
    with serving(Partner(served)) as url:
        target = Target(role, url=url, paths=paths, credentials=CREDENTIALS if role == "ipg" else None)
        with pytest.raises(WrongTarget) as raised:
            run_campaign(target, max_examples=EXAMPLES, seed=1)
    assert raised.value.answered.startswith(answered)
    assert f"at {url} was answered" in str(raised.value)
