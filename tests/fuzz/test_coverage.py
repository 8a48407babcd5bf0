"""Coverage in every verdict: each check ends passed, failed, warning or not exercised (with why); a
partner that let nothing through has not been tested (exit 2, one line saying what it answered and what
to check); --require-exercised makes a check not exercised fail; the control token of a mock served
with one (--control-token)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from mpesa_atm.cli import main
from mpesa_atm.fuzz import Target, run_campaign
from mpesa_atm.fuzz.collector import Door
from mpesa_atm.fuzz.events import CaseChecked
from mpesa_atm.fuzz.report import render_summary, write_junit
from mpesa_atm.fuzz.target import ControlRefused, call_control, open_session
from tests.fixtures.seeds import seeds
from tests.fuzz.lenient import Partner, Refused, serving, serving_handler

pytestmark = pytest.mark.usefixtures("fuzz_command_in_process")

SEEDS = seeds()  # four a Python, others on each: tests/fixtures/seeds.py
TOKEN = {
    "bank_transaction_ref": "12345678123412341234123456789abc",
    "transaction_id": "BVA12369A",
    "msisdn": "243843330333",
    "amount": "200",
    "currency": "CDF",
}
_BANK_FIELDS = ("input_CustomerMSISDN", "input_Amount", "input_Currency", "input_TransactionID")


class UnknownAccounts(Partner):
    """A bank written from the document that knows none of the campaign's customers: every Token
    Generation it can read is answered -1, as the document allows for an unknown account."""

    def _generate(self, raw: bytes, media_type: str, fields: dict[str, str]) -> dict[str, str]:
        fields.update(self._fields(raw, media_type, _BANK_FIELDS))
        raise Refused("-1", "account not found")


def _summary(out: str) -> str:
    return out.rstrip().splitlines()[-1]


# A partner that let nothing through -----------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_a_bank_that_answers_every_token_generation_minus_1_is_not_tested(capsys, tmp_path, strict):
    junit, page = tmp_path / "fuzz.xml", tmp_path / "fuzz.html"
    with serving(UnknownAccounts("bank")) as url:
        command = ["fuzz", "bank", "--url", url, "--max-examples", "10", "--seed", "3"]
        code = main([*command, "--junit-xml", str(junit), "--report", str(page), *(["--strict"] * strict)])

    out = capsys.readouterr().out
    assert code == 2, out
    line = _summary(out)
    assert line.startswith(
        "mpesa-atm fuzz bank: NOT TESTED: the bank let nothing through: every valid Token "
    )
    assert "was answered -1 'Failure: account not found', none 0" in line
    assert "does the bank know the MSISDN and account?" in line
    assert line.endswith("; seed 3")
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    error = suite.find("testcase[@name='untested']/error")
    assert error is not None and error.get("type") == "untested"
    assert "account not found" in (error.get("message") or "")
    html = page.read_text()
    assert ">UNTESTED</span>" in html and "Not tested: the bank let nothing through" in html


@pytest.mark.parametrize("seed", SEEDS)
def test_the_always_refusing_bank_is_untested_on_every_seed(seed):
    with serving(UnknownAccounts("bank")) as url:
        result = run_campaign(Target("bank", url=url), max_examples=10, seed=seed)

    assert result.exit_code == 2
    assert result.untested is not None and "-1 'Failure: account not found'" in result.untested


@contextmanager
def refusing_gateway(envelope: bool) -> Iterator[str]:
    """A gateway in front of a partner that wants an API key nobody gave: every call is refused with
    HTTP 401, in the API's envelope (-1 "API key missing") or in its own JSON (then GET is 404)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _send(self, status: int, body: dict[str, Any]) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if envelope:
                self._send(
                    401, {"output_ResponseCode": "-1", "output_ResponseDesc": "Failure: API key missing"}
                )
            else:
                self._send(401, {"message": "Unauthorized: API key missing"})

        def do_GET(self) -> None:
            self.do_POST() if envelope else self._send(404, {"message": "not found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving_handler(Handler) as url:
        yield url


@pytest.mark.network
def test_mpesa_atm_fuzz_against_a_gateway_that_refuses_every_call_with_401_exits_2_with_one_line(tmp_path):
    with refusing_gateway(envelope=True) as url:
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpesa_atm",
                "fuzz",
                "bank",
                "--url",
                url,
                "--max-examples",
                "3",
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )

    assert process.returncode == 2, process.stdout + process.stderr
    line = _summary(process.stdout)
    assert line.startswith("mpesa-atm fuzz bank: NOT TESTED: the bank let nothing through: every request (")
    assert "was refused with HTTP 401 -1 'Failure: API key missing'" in line
    assert "are credentials or a gateway header missing? Give what it wants with -H 'Name: value'" in line
    assert "PASSED" not in process.stdout


@pytest.mark.parametrize("role", ["bank", "ipg"])
def test_a_gateway_that_refuses_every_call_with_401_in_the_envelope_is_not_tested(role, credentials):
    with refusing_gateway(envelope=True) as url:
        result = run_campaign(
            Target(role, url=url, credentials=credentials if role == "ipg" else None), max_examples=3, seed=2
        )

    assert result.exit_code == 2
    assert result.untested is not None and "every request (" in result.untested
    assert "HTTP 401" in result.untested and "-H 'Name: value'" in result.untested


def test_a_gateway_that_refuses_outside_the_envelope_is_one_line_naming_the_header_flag(capsys):
    with refusing_gateway(envelope=False) as url:
        code = main(["fuzz", "bank", "--url", url, "--max-examples", "3", "--seed", "1"])

    captured = capsys.readouterr()
    assert code == 2
    (line,) = captured.err.strip().splitlines()
    assert "HTTP 401 outside the API's envelope" in line and "-H 'Name: value'" in line


def _checked(
    status: int | None, code: str | None, description: str | None = None, valid: bool = True
) -> CaseChecked:
    return CaseChecked("POST /x", (), status=status, code=code, description=description, valid=valid)


def test_the_door_of_a_bank_is_a_valid_token_generation_answered_0():
    door = Door("bank")
    for _ in range(4):
        door.answer(_checked(200, "-1", "Failure: unknown MSISDN"))
    door.answer(_checked(200, "0", valid=False))  # a case of schemathesis's is no valid case
    assert door.untested() is None  # 4 refusals: too few to say
    door.answer(_checked(400, "-1", "Failure: bad amount"))
    assert door.untested() == (
        "the bank let nothing through: no valid Token Generation of 5 got through, 4 were answered "
        "-1 'Failure: unknown MSISDN', none 0: does the bank know the MSISDN and account? "
        "(the cases' MSISDNs are 243 and 9 random digits)"
    )
    door.answer(_checked(200, "0", "Success"))
    assert door.untested() is None


def test_the_door_of_an_ipg_is_authentication_and_a_minus_9_has_passed_it():
    door = Door("ipg")
    for _ in range(4):
        door.answer(_checked(200, "-4", "Authentication Failed"))
    door.answer(_checked(403, "-5", "Bank Details Invalid"))
    reason = door.untested()
    assert reason is not None
    assert reason.startswith(
        "the iPG let nothing through: no valid Token Redemption or Reversal of 5 got through, 4 were "
        "answered -4 'Authentication Failed': check the bank's credentials at the iPG (--username"
    )
    door.answer(_checked(404, "-9", "Transaction Details Not Found"))  # past the credentials
    assert door.untested() is None


@pytest.mark.parametrize(
    "broken",
    [_checked(500, None), _checked(200, None), _checked(None, None), _checked(200, "00", "Success")],
    ids=["5xx", "outside-the-envelope", "no-status", "unmapped-code"],
)
def test_a_partner_that_broke_on_a_valid_case_was_tested_not_untested(broken):
    door = Door("bank")
    for _ in range(9):
        door.answer(_checked(200, "-1", "Failure"))
    door.answer(broken)
    assert door.untested() is None
    no_answer = Door("bank")
    for _ in range(9):
        no_answer.answer(_checked(200, "-1", "Failure"))
    no_answer.no_answer()
    assert no_answer.untested() is None


def test_no_valid_case_sent_is_not_untested_and_every_refusal_by_401_or_403_is():
    assert Door("bank").untested() is None
    door = Door("ipg")
    for _ in range(4):
        door.answer(_checked(401, None, valid=False))
    assert door.untested() is None  # too few to say
    door.answer(_checked(403, None, valid=False))
    assert door.untested() == (
        "the iPG let nothing through: every request (5) was refused with HTTP 401 or 403: are credentials "
        "or a gateway header missing? Give what it wants with -H 'Name: value' (or --cert and --key)"
    )


# Correct partners are never untested ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"formats": "strict"}, {"refusal_status": 400, "content_type": "require"}],
    ids=["lenient", "strict-formats", "400-refusals"],
)
def test_a_correct_bank_is_tested_on_every_seed(options):
    with serving(Partner("bank", **options)) as url:
        for seed in SEEDS:
            result = run_campaign(Target("bank", url=url), max_examples=3, seed=seed)
            assert result.untested is None, (seed, result.untested)
            assert result.exit_code == 0, (seed, render_summary(result))


@pytest.mark.parametrize(
    "options",
    [{}, {"auth_status": 401, "not_found_status": 404}, {"formats": "strict"}],
    ids=["lenient", "401-403-404", "strict-formats"],
)
def test_a_correct_ipg_without_tokens_is_tested_and_passes_naming_the_lifecycles_not_exercised(
    options, credentials
):
    with serving(Partner("ipg", **options)) as url:
        for seed in SEEDS:
            result = run_campaign(Target("ipg", url=url, credentials=credentials), max_examples=3, seed=seed)
            assert result.untested is None, (seed, result.untested)
            assert result.exit_code == 0, (seed, render_summary(result))
            assert "token_lifecycle" in result.not_exercised
            assert result.verdicts["token_lifecycle"].status == "not exercised"
            summary = render_summary(result)
            assert summary.startswith("mpesa-atm fuzz ipg: PASSED: ")
            assert "not exercised (" in summary and "token_lifecycle" in summary


# Not exercised, in every reporter --------------------------------------------------------------------


def test_an_ipg_campaign_without_tokens_passes_and_lists_what_it_did_not_exercise(capsys, tmp_path):
    junit, page = tmp_path / "fuzz.xml", tmp_path / "fuzz.html"
    with serving(Partner("ipg")) as url:
        command = ["fuzz", "ipg", "--url", url, "--max-examples", "4", "--seed", "5"]
        code = main([*command, "--junit-xml", str(junit), "--report", str(page)])

    out = capsys.readouterr().out
    assert code == 0, out
    summary = _summary(out)
    assert summary.startswith("mpesa-atm fuzz ipg: PASSED: ")
    assert "checks not exercised (" in summary and "token_lifecycle" in summary
    # The reasons: in the summary when short, else one a line above it.
    assert "token_lifecycle: needs tokens (--tokens) or a mock's /_harness control API" in out

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    skipped = {
        (case.get("classname"), case.get("name")): case.find("skipped")
        for case in suite.iter("testcase")
        if case.find("skipped") is not None
    }
    lifecycles = [element for (_, check), element in skipped.items() if check == "token_lifecycle"]
    assert len(lifecycles) == 2  # redemption and reversal
    for element in lifecycles:
        assert element is not None
        assert (element.get("message") or "").startswith("not exercised: needs tokens (--tokens)")
    assert suite.get("skipped") == str(len(skipped)) and suite.get("failures") == "0"

    html = page.read_text()
    badge = html[html.index('id="verdict">') :]
    badge = badge[: badge.index("</h1>")]
    # PASSED (WARNING when it passed with warnings), the checks not exercised beside it.
    assert badge.startswith(('id="verdict">PASSED</span>', 'id="verdict">WARNING</span>')), badge
    assert 'id="coverage">' in badge and "checks not exercised</span>" in badge
    row = html[html.index('data-check="token_lifecycle"') :]
    row = row[: row.index("</tr>")]
    assert "not exercised" in row and "Not exercised: it needs tokens (--tokens)" in row


def test_require_exercised_fails_a_campaign_that_left_checks_not_exercised(capsys, tmp_path):
    junit = tmp_path / "fuzz.xml"
    with serving(Partner("ipg")) as url:
        command = [
            "fuzz",
            "ipg",
            "--url",
            url,
            "--max-examples",
            "4",
            "--seed",
            "5",
            "--junit-xml",
            str(junit),
        ]
        code = main([*command, "--require-exercised"])

    out = capsys.readouterr().out
    assert code == 1, out
    summary = _summary(out)
    assert summary.startswith(
        "mpesa-atm fuzz ipg: FAILED (--require-exercised: every check must be exercised)"
    )
    assert "token_lifecycle" in summary
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failure = suite.find("testcase[@name='token_lifecycle']/failure")
    assert failure is not None and failure.get("type") == "not exercised"


def test_require_exercised_passes_a_campaign_that_exercised_every_check(mocks, credentials):
    target = Target("ipg", app=mocks.ipg_app, credentials=credentials)

    result = run_campaign(target, max_examples=30, seed=1, require_exercised=True)

    assert result.not_exercised == {}, result.not_exercised
    assert result.exit_code == 0, render_summary(result)


def test_a_result_by_hand_says_why_each_check_was_not_exercised_or_not_reached(tmp_path):
    from mpesa_atm.fuzz import CampaignResult

    result = CampaignResult(
        "ipg",
        "http://ipg.test",
        1,
        4,
        ("not_a_server_error", "replay_is_duplicate"),
        ("POST /token-redemption",),
        ("fuzz",),
        harness=False,
        exercised={"not_a_server_error": 4},
        exercised_on={("POST /token-redemption", "not_a_server_error"): 4},
    )
    assert result.verdicts["not_a_server_error"].status == "passed"
    assert result.not_exercised == {"replay_is_duplicate": "needs a request answered 0 Success, to replay"}
    result.interrupted = True
    assert result.not_exercised == {"replay_is_duplicate": "not reached: the campaign was interrupted"}
    write_junit(result, tmp_path / "fuzz.xml")
    suite = ET.parse(tmp_path / "fuzz.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("skipped") == "1"
    skipped = suite.find("testcase[@name='replay_is_duplicate']/skipped")
    assert skipped is not None and skipped.get("message") == "not reached: the campaign was interrupted"
    assert suite.find("testcase[@name='not_a_server_error']/skipped") is None


# The control token ----------------------------------------------------------------------------------


@pytest.mark.network
def test_fuzz_ipg_against_a_mock_served_with_a_control_token(serve, capsys, tmp_path, monkeypatch):
    served = serve("--control-token", "s3cret-token")
    url = served.ipg_url
    command = ["fuzz", "ipg", "--url", url, "--max-examples", "3", "--seed", "1"]

    # Without the token: one line, exit 2, naming the flag; nothing claimed done.
    assert main(command) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert "control API refused" in line and "HTTP 401" in line and "no control token was given" in line
    assert "--control-token TOKEN, or MPESA_ATM_CONTROL_TOKEN" in line
    assert "seeded" not in captured.out and "PASSED" not in captured.out

    # A wrong one: the same, saying so.
    assert main([*command, "--control-token", "wrong"]) == 2
    assert "the control token given is not its own" in capsys.readouterr().err

    # With it (from the environment): the lifecycles run, the token is nowhere in the files.
    monkeypatch.setenv("MPESA_ATM_CONTROL_TOKEN", "s3cret-token")
    har, page, junit = tmp_path / "f.har", tmp_path / "f.html", tmp_path / "f.xml"
    code = main([*command, "--har", str(har), "--report", str(page), "--junit-xml", str(junit)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "token_lifecycle" not in _summary(out)  # exercised
    for written in (har, page, junit):
        assert "s3cret-token" not in written.read_text()
    assert "control API used if /_harness answers, with a control token" in page.read_text()
    entries = json.loads(har.read_text())["log"]["entries"]
    control = [e for e in entries if "/_harness/" in e["request"]["url"]]
    assert control, "no control-API call in the HAR"
    for entry in control:
        headers = {h["name"].lower(): h["value"] for h in entry["request"]["headers"]}
        assert headers["authorization"] != "Bearer s3cret-token"
    api = [e for e in entries if "/_harness/" not in e["request"]["url"]]
    for entry in api:  # never sent to the partner's API
        assert "authorization" not in {h["name"].lower() for h in entry["request"]["headers"]}


def test_the_control_token_goes_on_control_calls_only_and_reproducers_read_it_from_the_environment(
    make_mocks, credentials
):
    mocks = make_mocks(control_token="s3cret-token")
    seen: list[tuple[str, str | None]] = []
    from mpesa_atm.fuzz.events import RequestSent

    def listener(event: object) -> None:
        if isinstance(event, RequestSent) and event.exchange is not None:
            headers = {name.lower(): value for name, value in event.exchange.request_headers}
            seen.append((event.exchange.url, headers.get("authorization")))

    target = Target("ipg", app=mocks.ipg_app, credentials=credentials, control_token="s3cret-token")
    result = run_campaign(target, max_examples=5, seed=4, listeners=[listener])

    assert result.exit_code == 0, render_summary(result)
    assert "token_lifecycle" not in result.not_exercised
    control = [auth for url, auth in seen if "/_harness/" in url]
    assert control and set(control) == {"Bearer s3cret-token"}
    assert all(auth is None for url, auth in seen if "/_harness/" not in url)
    assert "s3cret-token" not in repr(target)
    with open_session(target) as session:
        answer = call_control(target, session, "/tokens", TOKEN)
    assert answer.status == 201
    assert "s3cret-token" not in answer.curl
    assert "-H 'Authorization: Bearer '\"$MPESA_ATM_CONTROL_TOKEN\"" in answer.curl

    with pytest.raises(ControlRefused, match="no control token was given"):
        run_campaign(Target("ipg", app=mocks.ipg_app, credentials=credentials), max_examples=2, seed=4)


def test_the_control_token_comes_from_the_flag_then_the_environment_then_the_config_file(
    tmp_path, monkeypatch
):
    from mpesa_atm.fuzz import CampaignResult, campaign

    config = tmp_path / "harness.toml"
    config.write_text('control_token = "from-file"\n')
    targets: list[Target] = []

    def fake_campaign(target: Target, **options: object) -> CampaignResult:
        targets.append(target)
        return CampaignResult("ipg", target.label, 1, 1, (), (), (), harness=False)

    monkeypatch.setattr(campaign, "run_campaign", fake_campaign)
    command = ["fuzz", "ipg", "--url", "http://127.0.0.1:1", "--config", str(config)]

    assert main(command) == 0
    monkeypatch.setenv("MPESA_ATM_CONTROL_TOKEN", "from-env")
    assert main(command) == 0
    assert main([*command, "--control-token", "from-flag"]) == 0
    assert [target.control_token for target in targets] == ["from-file", "from-env", "from-flag"]
