"""The document's own rules of an answer, each held on many seeds against partners written from the document
with one fault (tests/fuzz/lenient.py's, changed in one place): a -3 that says "Success", a bank that
refuses a request without the Optional input_AccountNumber, an iPG whose refusals lack the Required
output_InsightReference (it answers no 0 at all), and a mock that pays a reference over the document's 32
characters. Beside them, which descriptions contradict their code, read from the mapping table."""

from __future__ import annotations

import dataclasses
import json
import re
import threading

import pytest

from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.fuzz import Credentials, Target, render_finding, run_campaign
from mpesa_atm.fuzz.events import Event, RequestSent
from mpesa_atm.fuzz.violations import contradicted_code
from mpesa_atm.settings import Settings
from tests.fixtures.seeds import seeds
from tests.fuzz.lenient import PASSWORD, USERNAME, Partner, serving
from tests.fuzz.partners import BROKEN

SEEDS = seeds()  # four a Python, others on each: tests/fixtures/seeds.py
EXAMPLES = 8  # as test_lenient_partners: every phase runs, the seeds take seconds
CREDENTIALS = Credentials(USERNAME, PASSWORD, "49272")
# How a Documented: line ends: the document's section, or the harness's reading with its row.
SOURCE = re.compile(r"\((the document, [^()]+|the harness's reading, docs/spec-notes\.md row \d+)\)$")


@dataclasses.dataclass
class DuplicateSaysSuccess(Partner):
    """A bank that answers a repeat with the first answer, its code changed to -3 and nothing else."""

    def answer(self, path: str, raw: bytes, media_type: str) -> tuple[int, dict[str, str]]:
        status, answer = super().answer(path, raw, media_type)
        if answer.get("output_ResponseCode") == "-3":
            answer["output_ResponseDesc"] = "Success"
        return status, answer


@dataclasses.dataclass
class NeedsAccountNumber(Partner):
    """A bank that looks the account up from input_AccountNumber and refuses, in its envelope, a request
    without it (-1, HTTP 200)."""

    def answer(self, path: str, raw: bytes, media_type: str) -> tuple[int, dict[str, str]]:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and "input_AccountNumber" not in body:
            return 200, {
                "output_ResponseCode": "-1",
                "output_ResponseDesc": "Failure: input_AccountNumber is required",
                "output_BankTransactionRef": "",
                "output_BankDateTime": "",
            }
        return super().answer(path, raw, media_type)


@dataclasses.dataclass
class RefusalsWithoutInsightReference(Partner):
    """An iPG whose refusals leave output_InsightReference out (the document: String Required)."""

    def answer(self, path: str, raw: bytes, media_type: str) -> tuple[int, dict[str, str]]:
        status, answer = super().answer(path, raw, media_type)
        if answer.get("output_ResponseCode") != "0":
            answer.pop("output_InsightReference", None)
        return status, answer


@dataclasses.dataclass
class AuthRefusalsWithoutInsightReference(Partner):
    """An iPG whose gateway answers -4 and -5 itself (HTTP 401, 403), code and description only."""

    def answer(self, path: str, raw: bytes, media_type: str) -> tuple[int, dict[str, str]]:
        status, answer = super().answer(path, raw, media_type)
        if answer.get("output_ResponseCode") in ("-4", "-5"):
            answer = {key: answer[key] for key in ("output_ResponseCode", "output_ResponseDesc")}
        return status, answer


def _campaign(partner: Partner, seed: int):  # type: ignore[no-untyped-def]
    with serving(partner) as url:
        ipg = partner.role == "ipg"
        target = Target(partner.role, url=url, credentials=CREDENTIALS if ipg else None)
        return run_campaign(target, max_examples=EXAMPLES, seed=seed, currencies=("USD",))


def _fresh(partner: Partner) -> Partner:
    return dataclasses.replace(
        partner, tokens={}, _lock=threading.Lock(), _answered={}, _transactions={}, _state={}
    )


BROKEN_READINGS = {
    "bank answering -3 with Success": (DuplicateSaysSuccess("bank"), "replay_is_duplicate"),
    "bank refusing a request without input_AccountNumber": (
        NeedsAccountNumber("bank"),
        "optional_field_left_out",
    ),
    # No tokens: every valid redemption and reversal is -9, and no answer is 0.
    "iPG whose refusals lack output_InsightReference": (
        RefusalsWithoutInsightReference("ipg"),
        "response_schema_conformance",
    ),
    # Only the probes are answered -4: their answers are held to the same fields.
    "iPG whose -4 and -5 lack output_InsightReference": (
        AuthRefusalsWithoutInsightReference("ipg", auth_status=401),
        "wrong_password_rejected",
    ),
}


@pytest.mark.network
@pytest.mark.parametrize("name", BROKEN_READINGS)
def test_a_partner_breaking_an_answer_rule_fails_every_seed_naming_its_check(name):
    partner, check = BROKEN_READINGS[name]
    for seed in SEEDS:
        result = _campaign(_fresh(partner), seed)
        shown = "\n\n".join(render_finding(finding) for finding in result.findings)
        failed = [finding for finding in result.failures if finding.check == check]
        assert result.exit_code == 1 and failed, f"seed {seed}:\n{shown}"
        for finding in result.findings:
            assert SOURCE.search(finding.message.split("\nDocumented: ", 1)[1]), shown


def test_the_ipg_without_insight_references_answers_no_0_so_only_the_any_answer_rule_finds_it():
    """What the seeds above rest on: the partner answers no 0, so a rule that read only answers 0
    (as it did) would pass it."""
    partner = _fresh(RefusalsWithoutInsightReference("ipg"))
    codes: set[str | None] = set()

    def listen(event: Event) -> None:
        if isinstance(event, RequestSent) and event.exchange is not None:
            codes.add(event.exchange.response_code)

    with serving(partner) as url:
        result = run_campaign(
            Target("ipg", url=url, credentials=CREDENTIALS),
            max_examples=EXAMPLES,
            seed=1,
            currencies=("USD",),
            listeners=[listen],
        )
    assert "0" not in codes and "-9" in codes, codes
    lacks = [f for f in result.failures if f.title == "The answer lacks output_InsightReference"]
    assert lacks and all('an answer "-' in f.message for f in lacks), [f.title for f in result.findings]


_OVER_THE_LIMIT = next(broken for broken in BROKEN if broken.name == "pays_over_the_limit")


def test_a_mock_paying_a_reference_over_32_characters_fails_every_seed(tmp_path, credentials, running):
    """The fuzz phase alone: it sends the references over the limit, the stateful phase none (and the
    iPG that pays a known token for such a reference is the lifecycle's). One partner for the seeds:
    each seed's references are its own."""
    app = running.start(_OVER_THE_LIMIT.app(Settings(db_path=str(tmp_path / "ipg.sqlite3"))))
    for seed in SEEDS:
        result = run_campaign(
            Target("ipg", app=app, credentials=credentials),
            max_examples=EXAMPLES,
            seed=seed,
            phases=("fuzz",),
        )
        over = [
            f
            for f in result.failures
            if f.check == "invalid_request_not_success"
            and "characters (maximum 32) was answered 0" in f.title
        ]
        assert result.exit_code == 1 and over, [render_finding(f) for f in result.findings]
        assert over[0].message.endswith("(the document, 2.1.2.1, 2.2.2.1)"), over[0].message


def test_the_correct_mock_is_never_sent_over_the_limit_without_refusing_it(make_mocks, tmp_path, credentials):
    app = make_mocks(db_path=str(tmp_path / "ipg.sqlite3")).ipg_app
    result = run_campaign(Target("ipg", app=app, credentials=credentials), max_examples=EXAMPLES, seed=4)
    over = [case for case in result.sent if case.kind == "over the limit"]
    # Each operation: one input_ThirdPartyReference and one input_BankTransactionRef of 33 characters.
    assert len(over) == 4 and all(
        sorted(len(case.body[f]) for f in ("input_ThirdPartyReference", "input_BankTransactionRef"))[-1] == 33
        for case in over
    )
    assert result.exit_code == 0, [render_finding(f) for f in result.findings]


_NUMERIC_CODE = next(broken for broken in BROKEN if broken.name == "numeric_response_code")


def test_an_envelope_finding_says_what_is_wrong_with_the_field(tmp_path, running):
    app = running.start(_NUMERIC_CODE.app(Settings(db_path=str(tmp_path / "bank.sqlite3"))))

    result = run_campaign(Target("bank", app=app), max_examples=2, seed=1, phases=("fuzz",))

    titles = {finding.title for finding in result.findings if finding.check == "json_envelope"}
    assert titles == {"output_ResponseCode is a number, not a string"}, titles
    (finding,) = (f for f in result.findings if f.check == "json_envelope")
    assert '"output_ResponseCode": 0' in finding.message or '"output_ResponseCode": -1' in finding.message


_SUCCESS, _FAILURE, _DUPLICATE = "0", "-1", "-3"


@pytest.mark.parametrize(
    ("code", "description", "contradicts"),
    [
        # Free text, a reason, the document's own sample "Internal Error": the partner's words.
        ("-1", "Failure: input_Amount does not match the token", None),
        ("-1", "Internal Error", None),
        ("-2", "Internal Error", None),
        ("0", "Token generated", None),
        ("0", "success", None),
        ("-3", "Duplicate Transaction", None),  # the table's comment on -3, no other code's description
        # Failure in plain words on any negative code; G2's own words on -2.
        ("-4", "Failure", None),
        ("-9", "Failure: no such token", None),
        ("-2", "Request Time Out", None),
        # Another code's description.
        ("-3", "Success", _SUCCESS),
        ("-9", "SUCCESS.", _SUCCESS),
        ("-2", "Success", _SUCCESS),
        ("0", "Failure", _FAILURE),
        ("0", "Duplicate: seen before", _DUPLICATE),
        ("-1", "Duplicate", _DUPLICATE),
        ("-4", "Bank Details Invalid", "-5"),
        # Nothing to compare: no code of the table, no description.
        ("00", "Failure", None),
        (None, "Success", None),
        ("-1", None, None),
    ],
)
def test_a_description_contradicts_its_code_only_when_it_is_another_codes(code, description, contradicts):
    assert contradicted_code(code, description) == contradicts


def test_no_code_contradicts_its_own_description_with_or_without_a_reason():
    for code, description in DESCRIPTIONS.items():
        assert contradicted_code(code.value, description) is None
        assert contradicted_code(code.value, f"{description.upper()}: a reason") is None
    assert contradicted_code(ResponseCode.SUCCESS.value, "Transaction Details Not Found") == "-9"
