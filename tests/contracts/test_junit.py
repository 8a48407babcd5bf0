"""`mpesa-atm verify --junit-xml FILE`: one test case per interaction, named by its description, its
class the consumer; a failure carries the mismatches and the provider states given."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from mpesa_atm.cli import main
from mpesa_atm.contracts import BANK, IPG, pact_dir, write_junit
from mpesa_atm.contracts.generate import pact_file_name, read_pact
from mpesa_atm.contracts.report import InteractionOutcome, Report
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from tests.contracts.fixtures import AlteredAnswer


def interactions(consumer: str, provider: str) -> list[dict]:
    return read_pact(pact_dir() / pact_file_name(consumer, provider))["interactions"]


def cases(path) -> tuple[ET.Element, list[ET.Element]]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return suite, list(suite.iter("testcase"))


@pytest.mark.network
def test_a_verified_provider_gives_one_passed_case_per_interaction(serve_app, tmp_path, capsys):
    url = serve_app(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))))
    junit = tmp_path / "verify.xml"

    status = main(["verify", "bank", "--url", url, "--junit-xml", str(junit)])

    assert status == 0, capsys.readouterr().out
    suite, testcases = cases(junit)
    expected = interactions(IPG, BANK)
    assert [case.get("name") for case in testcases] == [i["description"] for i in expected]
    assert {case.get("classname") for case in testcases} == {IPG}
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(expected)), "0", "0")
    assert not [case for case in testcases if len(case.findall("failure"))]
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["url"] == url and properties["provider"] == BANK


@pytest.mark.network
def test_a_broken_interaction_is_a_failure_with_its_mismatch_and_states(serve_app, tmp_path, capsys):
    app = create_app("ipg", Settings(db_path=str(tmp_path / "ipg.sqlite3")))
    url = serve_app(AlteredAnswer(app, path="/token-reversal", was="-3", becomes="-1"))
    junit = tmp_path / "verify.xml"

    status = main(["verify", "ipg", "--url", url, "--junit-xml", str(junit)])

    assert status == 1, capsys.readouterr().out
    suite, testcases = cases(junit)
    assert suite.get("failures") == "1"
    assert len(testcases) == len(interactions(BANK, IPG))
    failed = [case for case in testcases if case.find("failure") is not None]
    assert [(case.get("classname"), case.get("name")) for case in failed] == [
        (BANK, "a token reversal that repeats one already made")
    ]
    failure = failed[0].find("failure")
    assert failure is not None
    mismatch = "$.output_ResponseCode: received \"-1\", the contract expects it to be equal to '-3' (String)"
    assert failure.get("message") == mismatch
    assert failure.text is not None
    assert failure.text.splitlines() == [
        "given: the bank is registered; a token exists; the reversal was already made",
        mismatch,
    ]


def test_a_pending_interaction_is_skipped_and_an_unreachable_provider_writes_nothing(tmp_path, capsys):
    report = Report("generic-atm-bank", "http://bank.test", ["broker"], "http://bank.test/states")
    report.started = datetime(2025, 6, 1, tzinfo=UTC)
    report.interactions = [
        InteractionOutcome(
            IPG, "a new token", ("no token",), "pending", ("status: expected 200 but was 500",)
        ),
        InteractionOutcome(IPG, "a repeated token", (), "verified"),
    ]
    junit = tmp_path / "pending.xml"

    write_junit(report, junit)

    suite, testcases = cases(junit)
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")
    assert suite.get("timestamp") == "2025-06-01T00:00:00+00:00"
    skipped = testcases[0].find("skipped")
    assert skipped is not None and "status: expected 200 but was 500" in (skipped.text or "")
    assert testcases[1].find("skipped") is None

    not_written = tmp_path / "unreachable.xml"
    status = main(
        ["verify", "bank", "--url", "http://127.0.0.1:1", "--wait", "0", "--junit-xml", str(not_written)]
    )
    assert status == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not not_written.exists()
