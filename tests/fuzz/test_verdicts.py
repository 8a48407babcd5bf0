"""Failures and warnings: what breaks the document fails a campaign, what breaks only a choice of ours
warns (and fails it only when strict); one cause is one finding, shown with its most realistic case."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mpesa_atm.fuzz import CampaignResult, Finding, FindingFound, render_summary, write_junit
from mpesa_atm.fuzz.collector import Collector
from mpesa_atm.fuzz.violations import request_breaks_document
from mpesa_atm.spec import load_spec

OPERATION = "POST /token-generation"


def _result(*findings: Finding, strict: bool = False, interrupted: bool = False) -> CampaignResult:
    return CampaignResult(
        role="bank",
        target="http://bank.test",
        seed=7,
        max_examples=4,
        checks=("not_a_server_error", "status_code_conformance", "bank_reference_length"),
        operations=(OPERATION,),
        phases=("fuzz",),
        harness=False,
        cases=12,
        requests=15,
        findings=list(findings),
        strict=strict,
        interrupted=interrupted,
        exercised=dict.fromkeys(
            ("not_a_server_error", "status_code_conformance", "bank_reference_length"), 12
        ),
    )


def _finding(
    check: str, severity: str = "failure", realism: tuple[int, ...] = (), step: str = "c"
) -> Finding:
    return Finding(
        check,
        OPERATION,
        "fuzz",
        f"{check} broken",
        "Received: x\nDocumented: y",
        (step,),
        1,
        severity,
        realism,
    )  # type: ignore[arg-type]


FAILURE = _finding("not_a_server_error")
WARNING = _finding("status_code_conformance", "warning")


@pytest.mark.parametrize(
    ("findings", "strict", "interrupted", "exit_code", "verdict"),
    [
        ((), False, False, 0, "PASSED: no check failed"),
        ((WARNING,), False, False, 0, "PASSED: 1 warning (status_code_conformance)"),
        ((WARNING,), True, False, 1, "FAILED (--strict: warnings fail): 1 warning (status_code_conformance)"),
        (
            (FAILURE, WARNING),
            False,
            False,
            1,
            "FAILED: 1 failure (not_a_server_error), 1 warning (status_code_conformance)",
        ),
        ((FAILURE,), False, True, 130, "INTERRUPTED: 1 failure (not_a_server_error)"),
    ],
    ids=["clean", "warning", "strict-warning", "failure-and-warning", "interrupted"],
)
def test_the_exit_code_and_summary_count_failures_and_warnings(
    findings, strict, interrupted, exit_code, verdict
):
    result = _result(*findings, strict=strict, interrupted=interrupted)

    assert result.exit_code == exit_code
    assert (
        render_summary(result) == f"mpesa-atm fuzz bank: {verdict}; 12 cases (15 requests) in 0.0 s; seed 7"
    )


def _testcases(path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(path).getroot().iter("testcase")}


def test_junit_marks_warnings_as_such_and_fails_them_only_when_strict(tmp_path):
    write_junit(_result(FAILURE, WARNING), tmp_path / "lenient.xml")
    write_junit(_result(WARNING, strict=True), tmp_path / "strict.xml")

    lenient = _testcases(tmp_path / "lenient.xml")
    assert lenient["not_a_server_error"].find("failure").get("type") == "failure"
    warned = lenient["status_code_conformance"]
    assert warned.find("failure") is None
    assert "WARNING status_code_conformance" in warned.find("system-out").text
    assert {p.get("name"): p.get("value") for p in warned.iter("property")} == {"severity": "warning"}
    assert lenient["bank_reference_length"].find("failure") is None
    suite = ET.parse(tmp_path / "lenient.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert (properties["failures"], properties["warnings"], properties["strict"]) == ("1", "1", "false")

    strict = _testcases(tmp_path / "strict.xml")
    assert strict["status_code_conformance"].find("failure").get("type") == "warning"
    assert ET.parse(tmp_path / "strict.xml").getroot().find("testsuite").get("failures") == "1"


def test_a_failure_of_a_check_takes_in_its_warnings_on_the_same_operation():
    result = _result()
    collector = Collector(result)
    collector.emit(FindingFound(_finding("bank_reference_length", "warning")))
    collector.emit(FindingFound(_finding("bank_reference_length", "failure")))
    collector.emit(FindingFound(WARNING))

    assert [(f.check, f.severity) for f in collector.findings()] == [
        ("bank_reference_length", "failure"),  # failures first
        ("status_code_conformance", "warning"),
    ]


def test_a_finding_shows_its_most_realistic_case_and_counts_them_all():
    collector = Collector(_result())
    for realism, step in [((0, 0, 0), "[]"), ((1, 1, 4), "valid"), ((0, 1, 2), "malformed")]:
        collector.emit(FindingFound(_finding("not_a_server_error", realism=realism, step=step)))

    (finding,) = collector.findings()
    assert (finding.reproduce, finding.occurrences) == (("valid",), 3)


class _Case:
    """What request_breaks_document reads of a case: its body and its operation's id."""

    def __init__(self, body: object) -> None:
        self.body = body
        self.operation = type(
            "Operation", (), {"definition": type("D", (), {"raw": {"operationId": "token_generation"}})}
        )


VALID = dict(
    load_spec("bank.yaml")["paths"]["/token-generation"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]["document"]["value"]
)


@pytest.mark.parametrize(
    ("body", "breaks"),
    [
        (VALID, False),
        ({**VALID, "input_CustomerMSISDN": "24384333033x"}, False),  # only our format
        ({**VALID, "input_Amount": 200}, False),  # a number: only our type
        ({**VALID, "input_Extra": "1"}, False),  # an unknown field: our closed list
        ({k: v for k, v in VALID.items() if k != "input_AccountNumber"}, False),  # optional
        ({k: v for k, v in VALID.items() if k != "input_Amount"}, True),  # required, missing
        ({**VALID, "input_Currency": ""}, True),  # required, empty
        ([], True),
        ("{not json", True),
        ('{"input_Amount": "1"}', True),
    ],
)
def test_a_request_breaks_the_document_only_without_a_required_field_or_a_json_object(body, breaks):
    assert request_breaks_document(_Case(body)) is breaks  # type: ignore[arg-type]
