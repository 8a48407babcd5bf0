"""Real tokens (--tokens FILE) spent on lifecycles without the control API, the token nobody issued,
and the bounded wrong-password and other-shortcode probes (--auth-probes)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from mpesa_atm.cli import main
from mpesa_atm.errors import UsageError
from mpesa_atm.fuzz import Target, render_finding, run_campaign
from mpesa_atm.fuzz.events import Event, RequestSent
from mpesa_atm.fuzz.stateful import PLANS
from mpesa_atm.fuzz.tokens import TOKEN_COLUMNS, Token, read_tokens
from mpesa_atm.settings import Settings
from mpesa_atm.spec import load_spec
from mpesa_atm.states import A_TOKEN_EXISTS
from tests.fuzz.partners import BROKEN

_BROKEN = {broken.name: broken for broken in BROKEN}


pytestmark = pytest.mark.usefixtures("fuzz_command_in_process")


_HEADER = ",".join(TOKEN_COLUMNS)


def _shown(result) -> str:
    return "\n\n".join(render_finding(finding) for finding in result.findings)


def _tokens(count: int) -> list[Token]:
    return [
        Token(f"{index:02d}" + "ab" * 15, f"BVA{index:04d}X", f"24381{index:07d}", f"{200 + index}.50", "CDF")
        for index in range(count)
    ]


def _row(token: Token) -> dict[str, str]:
    """The token as the control API's POST /_harness/tokens takes it."""
    return {column: getattr(token, column) for column in TOKEN_COLUMNS}


def _write(path: Path, tokens: list[Token]) -> Path:
    lines = [_HEADER, *(",".join(getattr(token, c) for c in TOKEN_COLUMNS) for token in tokens)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _issue(app, tokens: list[Token]) -> None:
    """Has the iPG issue `tokens`, as real withdrawals would: through its control API, as the test setup
    (the campaign itself does not use it)."""
    client = TestClient(app, base_url="http://ipg.test")  # not entered: the app runs (Running.start)
    for token in tokens:
        answer = client.post("/_harness/tokens", json={**_row(token), "username": "fnb"})
        assert answer.status_code == 201, answer.text


# The file -------------------------------------------------------------------------------------------


def test_the_columns_are_the_control_apis_and_the_provider_states_token_fields(mocks):
    control = load_spec("control.yaml", role="ipg")["paths"]["/tokens"]["post"]
    assert set(TOKEN_COLUMNS) == set(
        control["requestBody"]["content"]["application/json"]["schema"]["required"]
    )
    row = _row(_tokens(1)[0])
    state = {"state": A_TOKEN_EXISTS, "params": {**row, "username": "fnb"}, "action": "setup"}
    assert mocks.ipg.post("/_harness/provider-states", json=state).status_code == 200


def test_a_tokens_file_is_read_in_any_column_order_skipping_blank_lines(tmp_path):
    tokens = _tokens(2)
    columns = list(reversed(TOKEN_COLUMNS))
    rows = [",".join(columns), "", *(",".join(getattr(t, c) for c in columns) for t in tokens), ""]
    (tmp_path / "tokens.csv").write_text("\n".join(rows))

    assert read_tokens(tmp_path / "tokens.csv") == tuple(tokens)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("", "is empty"),
        ("bank_transaction_ref,transaction_id,msisdn,amount\n", "line 1: the header must name"),
        (_HEADER + "\n", "line 1: a header but no token"),
        (
            _HEADER + "\nabc,BVA1,243810000001,200,CDF\nabd,BVA2,243810000002,2OO,CDF\n",
            "line 3: amount '2OO'",
        ),
        (_HEADER + "\n\nabc,BVA1,243810000001,200\n", "line 3: 4 values, expected 5"),
        (_HEADER + "\nabc,BVA1,243810000001,200,CDF\nabc,BVA2,243810000002,200,CDF\n", "already on line 2"),
        (_HEADER + "\nabc,BVA1,243810000001,200,XYZ\n", "currency 'XYZ' is not one of"),
        (_HEADER + "\n" + "a" * 33 + ",BVA1,243810000001,200,CDF\n", "line 2: bank_transaction_ref"),
    ],
)
def test_a_malformed_tokens_file_is_a_usage_error_naming_the_line(tmp_path, content, said):
    path = tmp_path / "tokens.csv"
    path.write_text(content)

    with pytest.raises(UsageError) as raised:
        read_tokens(path)

    assert said in str(raised.value) and str(path) in str(raised.value) and raised.value.argument == "tokens"


def test_fuzz_says_what_is_wrong_with_the_tokens_file_in_one_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "tokens.csv"
    path.write_text(_HEADER + "\nabc,BVA1,243810000001,-200,CDF\n")

    code = main(["fuzz", "ipg", "--url", "http://127.0.0.1:9", "--tokens", str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"--tokens {path} line 2: amount '-200'" in err, err


# Spending them ---------------------------------------------------------------------------------------


def test_each_token_is_spent_on_one_lifecycle_without_the_control_api(mocks, credentials, tmp_path):
    tokens = _tokens(3)
    _issue(mocks.ipg_app, tokens)
    target = Target("ipg", app=mocks.ipg_app, credentials=credentials)

    events: list[Event] = []

    result = run_campaign(
        target, max_examples=5, seed=1, use_harness=False, tokens=tokens, listeners=[events.append]
    )

    assert result.findings == [], _shown(result)
    assert not result.harness
    sent = [event.exchange for event in events if isinstance(event, RequestSent) and event.exchange]
    assert not [exchange.url for exchange in sent if exchange.label == "control"]
    stateful = [case for case in result.sent if case.phase == "stateful" and case.kind != "unknown_token"]
    by_token: dict[str, list[str]] = {}
    for case in stateful:
        by_token.setdefault(case.body["input_BankTransactionRef"], []).append(case.kind)
    plans = [list(PLANS[index % len(PLANS)]) for index in range(3)]
    assert [by_token[token.bank_transaction_ref] for token in tokens] == plans
    assert result.exercised["token_lifecycle"] >= sum(len(plan) for plan in plans) - 3  # open answers
    assert any("3 of the 3 tokens given were spent" in note for note in result.notes), result.notes


@pytest.mark.network
def test_fuzz_ipg_spends_the_tokens_of_a_file_on_a_served_mock_without_its_control_api(
    serve, tmp_path, capsys
):
    served = serve()
    tokens = _tokens(2)
    for token in tokens:
        answer = httpx.post(f"{served.ipg_url}/_harness/tokens", json=_row(token))
        assert answer.status_code == 201, answer.text
    path = _write(tmp_path / "tokens.csv", tokens)

    code = main(
        ["fuzz", "ipg", "--url", served.ipg_url, "--no-harness", "--tokens", str(path), "--seed", "1"]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 of the 2 tokens given were spent" in out
    assert "token lifecycle lifecycles: 2/2 lifecycles" in out


@pytest.mark.parametrize("name", ["redeems_twice", "pays_another_amount", "reverses_twice"])
def test_a_default_campaign_with_real_tokens_fails_an_ipg_that_breaks_a_lifecycle(
    name, credentials, tmp_path, running
):
    broken = _BROKEN[name]
    app = running.start(broken.app(Settings(db_path=str(tmp_path / "ipg.sqlite3"))))
    tokens = _tokens(2)
    _issue(app, tokens)
    path = _write(tmp_path / "tokens.csv", tokens)

    result = run_campaign(
        Target("ipg", app=app, credentials=credentials), seed=1, use_harness=False, tokens=read_tokens(path)
    )

    found = {finding.check for finding in result.findings}
    assert result.exit_code == 1 and broken.expected in found, _shown(result)
    assert found <= {broken.expected} | broken.also, _shown(result)


@pytest.mark.parametrize("seed", [1, 2])
def test_an_ipg_that_pays_a_token_nobody_issued_fails_without_tokens_or_control_api(
    seed, credentials, tmp_path, running
):
    broken = _BROKEN["pays_unknown_tokens"]
    app = running.start(broken.app(Settings(db_path=str(tmp_path / "ipg.sqlite3"))))

    result = run_campaign(Target("ipg", app=app, credentials=credentials), seed=seed, use_harness=False)

    found = {finding.check for finding in result.findings}
    assert result.exit_code == 1 and "unknown_token_paid" in found, _shown(result)
    unknown = [case for case in result.sent if case.kind == "unknown_token"]
    assert len(unknown) == 2  # one redemption, one reversal: per campaign, not per case


def test_tokens_are_for_an_ipg_campaign(mocks):
    with pytest.raises(UsageError, match="tokens are spent by an iPG"):
        run_campaign(Target("bank", app=mocks.bank_app), tokens=_tokens(1))


# Auth probes --------------------------------------------------------------------------------------


def _credential_probes(events: list[Event], credentials) -> tuple[int, int]:
    wrong_password = other_shortcode = 0
    for event in events:
        exchange = event.exchange if isinstance(event, RequestSent) else None
        if exchange is None or not exchange.label.startswith("POST"):
            continue
        try:
            body = json.loads(exchange.request_body)
        except ValueError:
            continue
        if not isinstance(body, dict) or body.get("input_Username") != credentials.username:
            continue
        if body.get("input_Password") == credentials.wrong_password():
            wrong_password += 1
        elif body.get("input_BankShortcode") == credentials.unlinked_shortcode():
            other_shortcode += 1
    return wrong_password, other_shortcode


@pytest.mark.parametrize(("probes", "workers"), [(3, 1), (2, 2), (0, 1)])
def test_wrong_password_and_other_shortcode_probes_go_out_at_most_n_times(
    mocks, credentials, probes, workers
):
    events: list[Event] = []
    target = Target("ipg", app=mocks.ipg_app, credentials=credentials)

    result = run_campaign(
        target, max_examples=30, seed=4, workers=workers, auth_probes=probes, listeners=[events.append]
    )

    assert result.findings == [], _shown(result)
    assert _credential_probes(events, credentials) == (probes, probes)
    assert result.exercised.get("wrong_password_rejected", 0) == probes
    assert (probes == 0) == any("auth probes 0" in note for note in result.notes)


def test_fuzz_takes_auth_probes_and_tokens_from_the_command_line(monkeypatch, tmp_path):
    from mpesa_atm.fuzz import CampaignResult, campaign

    seen = []

    def fake_campaign(target, **options):
        seen.append(options)
        return CampaignResult("ipg", target.label, 1, 1, (), (), (), harness=False)

    monkeypatch.setattr(campaign, "run_campaign", fake_campaign)
    path = _write(tmp_path / "tokens.csv", _tokens(2))

    assert (
        main(["fuzz", "ipg", "--url", "http://127.0.0.1:9", "--auth-probes", "0", "--tokens", str(path)]) == 0
    )
    assert main(["fuzz", "ipg", "--url", "http://127.0.0.1:9"]) == 0

    assert [(o["auth_probes"], o["tokens"]) for o in seen] == [(0, tuple(_tokens(2))), (3, ())]
