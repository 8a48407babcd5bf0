"""`--report FILE.html` of a campaign: every check with its section and verdict, each finding with its
reproduction, the charts; rendered by headless Chromium. And `--har FILE`: every exchange, HAR 1.2."""

from __future__ import annotations

import dataclasses
import json

from mpesa_atm.fuzz import CampaignResult, Finding, Target, run_campaign
from mpesa_atm.fuzz.checks import checks_for
from mpesa_atm.fuzz.page import HtmlReporter, check_rows, finding_view, sections_of
from mpesa_atm.fuzz.report import HarReporter
from mpesa_atm.reporting.page import write_page
from mpesa_atm.settings import Settings
from tests.fuzz.partners import BROKEN
from tests.reporting.browser import rendered_dom
from tests.reporting.dom import parse
from tests.reporting.har import assert_har_1_2
from tests.reporting.selfcontained import assert_self_contained

VERDICTS = {"passed", "failed", "warning", "few cases", "not exercised"}


def _result(**changes: object) -> CampaignResult:
    result = CampaignResult(
        role="bank",
        target="http://bank.test",
        seed=7,
        max_examples=20,
        checks=tuple(info.name for info in checks_for("bank")),
        operations=("POST /token-generation",),
        phases=("fuzz",),
        harness=False,
    )
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_the_page_of_a_campaign_against_a_broken_partner_renders_every_check_finding_and_chart(
    tmp_path, credentials, running
):
    broken = next(b for b in BROKEN if b.name == "ipg_duplicate_new_reference")
    app = running.start(broken.app(Settings(db_path=str(tmp_path / "partner.sqlite3"))))
    page, har = tmp_path / "fuzz.html", tmp_path / "fuzz.har"

    result = run_campaign(
        Target("ipg", app=app, credentials=credentials),
        max_examples=20,
        seed=7,
        listeners=[HtmlReporter(page), HarReporter(har)],
    )

    html = page.read_text()
    assert_self_contained(html)
    dom = parse(rendered_dom(page))
    assert dom.having("span", id="verdict")[0].text == "FAILED"
    rows = {
        row.attrs["data-check"]: (
            row.having("td", class_="section")[0].text,
            row.having("span", class_="pill")[0].text,
        )
        for row in dom.having("tr")
        if "data-check" in row.attrs
    }
    # Each check with the sections it enforces on the iPG's side.
    assert {name: section for name, (section, _) in rows.items()} == {
        info.name: sections_of("ipg", info.section) for info in checks_for("ipg")
    }
    assert rows["not_a_server_error"][0] == "2.1.3, 2.2.3"
    assert {verdict for _, verdict in rows.values()} <= VERDICTS
    assert rows["replay_is_duplicate"] == ("2.1, 2.2", "failed")
    assert rows["token_lifecycle"][1] == "passed"
    # The finding: received against documented, and its requests in order (the token recorded
    # through the control API, the redemption, its replay), the password read from the environment.
    finding = dom.having("article", class_="finding")[0]
    assert "replay_is_duplicate" in finding.text
    assert finding.having("td", class_="documented")[0].text.startswith("-3 Duplicate")
    steps = [pre.text for pre in finding.having("pre", class_="curl")]
    assert len(steps) == 3 and steps[1] == steps[2] and "/_harness/tokens" in steps[0]
    assert finding.having("h4")[0].text == "Reproduce: 3 requests, in this order"
    assert steps[1].startswith("curl -sS -X POST http://") and '"$MPESA_ATM_PASSWORD"' in steps[1]
    # The charts, as inline SVG.
    figures = {figure.attrs["id"]: figure for figure in dom.having("figure")}
    assert set(figures) == {"chart-answers", "chart-latency", "chart-over-time"}
    assert all(figure.having("svg") for figure in figures.values())
    assert {
        rect.attrs["data-class"]
        for rect in figures["chart-answers"].having("rect")
        if "data-class" in rect.attrs
    } >= {"0", "-3"}
    assert figures["chart-latency"].having("text", class_="p99")
    # Never the password, on the page or in the recording.
    har_text = har.read_text()
    assert "P@ssword123" not in html and "P@ssword123" not in har_text
    document = json.loads(har_text)
    assert_har_1_2(document)
    assert len(document["log"]["entries"]) == result.requests
    assert any(entry["comment"].startswith("POST /_harness/") for entry in document["log"]["entries"])


def test_a_check_is_failed_warned_passed_on_few_cases_or_not_exercised_and_then_says_why():
    finding = Finding(
        "bank_reference_length", "POST /token-generation", "fuzz", "t", "Received: x\nDocumented: y", ()
    )
    warning = Finding(
        "status_code_conformance", "POST /token-generation", "fuzz", "t", "Received: x\nDocumented: y", ()
    )
    result = _result(
        checks=(
            "bank_reference_length",
            "replay_is_duplicate",
            "json_envelope",
            "not_a_server_error",
            "status_code_conformance",
        ),
        findings=[finding, dataclasses.replace(warning, severity="warning")],
        exercised={
            "bank_reference_length": 9,
            "json_envelope": 2,
            "not_a_server_error": 20,
            "status_code_conformance": 20,
        },
    )

    rows = {row.name: row for row in check_rows(result)}

    assert set(rows) == {info.name for info in checks_for("bank")}
    # What matters first.
    assert [row.verdict for row in check_rows(result)][:3] == ["failed", "warning", "few cases"]
    assert (rows["bank_reference_length"].verdict, rows["bank_reference_length"].cases) == ("failed", 9)
    assert rows["status_code_conformance"].verdict == "warning"
    assert rows["json_envelope"].verdict == "few cases" and "only 2 cases" in rows["json_envelope"].why
    assert rows["not_a_server_error"].verdict == "passed"
    assert rows["replay_is_duplicate"].verdict == "not exercised"
    assert "a request answered 0 Success, to replay" in rows["replay_is_duplicate"].why
    assert rows["bank_date_time_format"].verdict == "not exercised"
    assert "(--check, --exclude-check)" in rows["bank_date_time_format"].why
    # A strict campaign fails the check of a warning.
    strict = {row.name: row.verdict for row in check_rows(dataclasses.replace(result, strict=True))}
    assert strict["status_code_conformance"] == "failed"


def test_a_finding_shows_received_and_documented_for_every_kind_of_check():
    own = finding_view(
        Finding(
            "bank_reference_length",
            "POST /token-generation",
            "fuzz",
            "t",
            "Received: 'abc'\nDocumented: 32",
            ("c1",),
        )
    )
    builtin = finding_view(
        Finding(
            "not_a_server_error", "POST /token-generation", "fuzz", "Server error", "Received 500\n\nbody", ()
        )
    )

    assert (own.received, own.documented, own.details, own.section) == ("'abc'", "32", "", "3.1.3.1")
    assert (builtin.received, builtin.details) == ("Received 500", "body")
    assert builtin.documented.startswith("No answer is a 5xx")


def test_a_check_shows_the_sections_of_the_role_fuzzed():
    assert sections_of("bank", "2.1.3, 2.2.3, 3.1.3") == "3.1.3"
    assert sections_of("ipg", "2.1, 2.2, 3.1") == "2.1, 2.2"
    assert sections_of("bank", "4") == "4"


def test_the_badge_names_the_checks_not_exercised_and_an_interrupted_campaign_its_checks_not_reached(
    tmp_path,
):
    exercised = {name: 10 for name in _result().checks if name != "replay_is_duplicate"}
    passed = _result(exercised=exercised)
    context = HtmlReporter(tmp_path / "p.html").context(passed)
    assert (context["verdict"], context["badge_note"]) == ("passed", "1 check not exercised")
    rows = {row.name: row for row in context["checks"]}
    assert rows["replay_is_duplicate"].why.startswith(
        "Not exercised: it needs a request answered 0 Success, to replay"
    )

    interrupted = _result(exercised={"not_a_server_error": 10}, interrupted=True)
    context = HtmlReporter(tmp_path / "i.html").context(interrupted)
    assert context["verdict"] == "interrupted"
    assert context["badge_note"] == f"{len(interrupted.checks) - 1} checks not reached"
    rows = {row.name: row for row in context["checks"]}
    assert rows["replay_is_duplicate"].why == "Not reached: the campaign was interrupted."
    assert rows["not_a_server_error"].verdict == "passed"

    every = _result(exercised=dict.fromkeys(_result().checks, 10))
    assert HtmlReporter(tmp_path / "e.html").context(every)["badge_note"] == ""


def test_a_partner_that_let_nothing_through_is_untested_on_the_page_with_why(tmp_path):
    reason = "the bank let nothing through: every valid Token Generation (9) was answered -1"
    result = _result(exercised={"not_a_server_error": 9}, untested=reason)
    page = tmp_path / "p.html"

    context = HtmlReporter(page).context(result)
    assert context["verdict"] == "untested"
    assert context["lead"] == f"Not tested: {reason}."
    write_page(page, "fuzz.html", **context)
    html = page.read_text()
    assert 'id="verdict">UNTESTED</span>' in html and reason in html
