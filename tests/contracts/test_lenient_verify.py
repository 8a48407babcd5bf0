"""`mpesa-atm verify` judges as `fuzz` does: correct partners written from the document alone
(tests/fuzz/lenient.py) that read its silent points otherwise than the harness pass, with warnings
naming the interaction and the spec-notes row; partners that break the document still fail. Each is
verified once by Pact's real verifier (verify has no seed), its provider states set by
tests/contracts/lenient_provider.py."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from mpesa_atm.cli import main
from mpesa_atm.contracts import BANK, IPG, pact_dir
from mpesa_atm.contracts.generate import pact_file_name, read_pact
from mpesa_atm.settings import Settings
from tests.contracts.fixtures import FakeBroker
from tests.contracts.lenient_provider import serving_provider
from tests.fuzz.lenient import Partner
from tests.fuzz.partners import BROKEN as FAULTY
from tests.reporting.dom import parse

pytestmark = pytest.mark.network

ROW = "(the harness's reading, docs/spec-notes.md row {})"


def descriptions(role: str) -> list[str]:
    consumer, provider = (BANK, IPG) if role == "ipg" else (IPG, BANK)
    return [
        i["description"] for i in read_pact(pact_dir() / pact_file_name(consumer, provider))["interactions"]
    ]


def verify(capsys, role: str, url: str, *argv: str) -> tuple[int, str]:
    status = main(["verify", role, "--url", url, "--wait", "0", *argv])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def warned(out: str) -> dict[str, list[str]]:
    """Each interaction printed WARNING, with its warning lines."""
    found: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("  WARNING "):
            current = line.removeprefix("  WARNING ").split("  (consumer")[0]
            found[current] = []
        elif line.startswith("  ") and not line.startswith("            "):
            current = None
        elif current is not None and line.strip().startswith("warning: "):
            found[current].append(line.strip())
    return found


# (partner, Content-Type of its answers, the interactions warned about and the rows they name)
CORRECT = [
    pytest.param(
        Partner("ipg", auth_status=401),
        "application/json",
        {
            "a token redemption with a wrong password": {21},
            "a token redemption from a shortcode not linked to the bank": {21},
            "a token reversal for a token the iPG holds": {26},
        },
        id="ipg-401-403-for-4-5",
    ),
    pytest.param(
        Partner("ipg", insight_length=36, reversible="any"),
        "application/json",
        {
            "a token redemption for a token the iPG holds": {22},
            "a token redemption that repeats one already made": {22},
            "a token reversal for a token the iPG holds": {22},
            "a token reversal that repeats one already made": {22},
        },
        id="ipg-36-character-insight-reference",
    ),
    pytest.param(
        Partner("ipg", reversible="redeemed", refusal_status=400),
        "application/json",
        {"a token reversal for a token the iPG holds": {21, 26}},
        id="ipg-reverses-only-redeemed-tokens",
    ),
    pytest.param(
        Partner("ipg", reversible="unredeemed"), "application/json", {}, id="ipg-reverses-only-unredeemed"
    ),
    pytest.param(
        Partner("ipg", reversible="unredeemed"),
        "text/plain",
        {description: {18} for description in descriptions("ipg")},
        id="ipg-text-plain",
    ),
    pytest.param(
        Partner("bank"),
        "text/plain",
        {description: {18} for description in descriptions("bank")},
        id="bank-text-plain",
    ),
]


@pytest.mark.parametrize(("partner", "content_type", "warnings"), CORRECT)
def test_a_correct_partner_reading_a_silent_point_otherwise_passes_with_warnings(
    partner, content_type, warnings, capsys
):
    with serving_provider(partner, content_type=content_type) as url:
        status, out = verify(capsys, partner.role, url)
    assert status == 0, out
    assert "FAILED" not in out
    shown = warned(out)
    assert set(shown) == set(warnings), out
    for description, rows in warnings.items():
        named = {row for row in rows for line in shown[description] if line.endswith(ROW.format(row))}
        assert named == rows, shown[description]
        assert len(shown[description]) >= len(rows)
    total = len(descriptions(partner.role))
    assert (
        f"{total} interactions: {total - len(warnings)} verified, {len(warnings)} with warnings, 0 failed"
        in out
    )


class ForgetsRedemptions(Partner):
    """An iPG that does not remember the redemptions it answered 0: the repeat of one is refused -1
    ("already used") instead of -3 with the first answer's reference (2.1: a duplicate)."""

    def _ipg(self, fields, operation):
        key, first = super()._ipg(fields, operation)
        return key, (first if operation == "reverse" else None)


class PaysTwice(Partner):
    """A bank that forgets its Token Generations: a repeat gets a second token, 0 (3.1: a duplicate)."""

    def _generate(self, raw, media_type, fields):
        self._answered.clear()
        return super()._generate(raw, media_type, fields)


BROKEN = [
    pytest.param(
        ForgetsRedemptions("ipg"),
        "application/json",
        "a token redemption that repeats one already made",
        """$.output_ResponseCode: received "-1", the contract expects it to be equal to '-3' (String)""",
        id="ipg-repeat-answered-1",
    ),
    pytest.param(
        PaysTwice("bank"),
        "text/plain",
        "a token generation that repeats one already made",
        """$.output_ResponseCode: received "0", the contract expects it to be equal to '-3'""",
        id="bank-text-plain-pays-twice",
    ),
]


@pytest.mark.parametrize(("partner", "content_type", "broken", "mismatch"), BROKEN)
def test_a_partner_that_breaks_the_document_fails(partner, content_type, broken, mismatch, capsys):
    with serving_provider(partner, content_type=content_type) as url:
        status, out = verify(capsys, partner.role, url)
    assert status == 1, out
    assert f"  FAILED  {broken}  (consumer " in out
    assert mismatch in out
    assert out.count("FAILED ") == 1


def test_junit_and_the_page_show_the_warnings_and_strict_fails_on_them(tmp_path, capsys):
    partner = Partner("ipg", auth_status=401, reversible="any")
    junit, page = tmp_path / "verify.xml", tmp_path / "verify.html"
    wrong_password = "a token redemption with a wrong password"
    with serving_provider(partner) as url:
        status, out = verify(capsys, "ipg", url, "--junit-xml", str(junit), "--report", str(page))
        assert status == 0, out

        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None and suite.get("failures") == "0"
        cases = {case.get("name"): case for case in suite.iter("testcase")}
        warned_cases = {
            name
            for name, case in cases.items()
            if any(p.get("name") == "severity" and p.get("value") == "warning" for p in case.iter("property"))
        }
        assert warned_cases == {wrong_password, "a token redemption from a shortcode not linked to the bank"}
        case = cases[wrong_password]
        assert case.find("failure") is None
        out_text = case.findtext("system-out") or ""
        assert "status: expected 200 but was 401" in out_text and out_text.endswith(ROW.format(21))

        dom = parse(page.read_text())
        assert dom.having("span", id="verdict")[0].text == "WARNING"
        cards = dom.having("article", class_="warning")
        assert len(cards) == 2
        card = next(c for c in cards if wrong_password in c.having("h3")[0].text)
        assert "status: expected 200 but was 401" in card.having("ul", class_="warnings")[0].text
        assert ROW.format(21) in card.having("ul", class_="warnings")[0].text
        assert "7 interactions: 5 verified, 2 with warnings, 0 failed" in page.read_text()

        status, out = verify(capsys, "ipg", url, "--strict", "--junit-xml", str(junit), "--report", str(page))
    assert status == 1, out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2"
    failures = [case.find("failure") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert {failure.get("type") for failure in failures} == {"warning"}
    assert all(ROW.format(21) in (failure.text or "") for failure in failures)
    assert parse(page.read_text()).having("span", id="verdict")[0].text == "FAILED"


# The mock with one fault of tests/fuzz/partners.py that the contracts' interactions meet: how fuzz
# judges it, verify judges it (a failure fails, a warning passes). The faults the interactions do not
# meet (an invalid request's answer, a refusal's body on the bank) are fuzz's alone.
FAULTS = {
    "short_reference": (
        1,
        {"a token generation for a new transaction", "a token generation that repeats one already made"},
        {},
    ),
    "iso8583_success": (1, {"a token generation for a new transaction"}, {}),
    "text_content_type": (
        0,
        set(),
        {
            "a token generation for a new transaction": {18},
            "a token generation that repeats one already made": {18},
        },
    ),
    "extra_output_field": (0, set(), {}),  # Pact ignores a field the contract does not name (row 25)
    "echoes_bank_reference": (1, set(descriptions("ipg")), {}),  # refusals too: not empty, not the echo
    "ignores_password": (1, {"a token redemption with a wrong password"}, {}),
    "pays_unknown_tokens": (1, {"a token redemption for a token the iPG does not hold"}, {}),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_the_mock_with_one_fault_is_judged_as_fuzz_judges_it(name, serve_app, tmp_path, capsys):
    (broken,) = [b for b in FAULTY if b.name == name]
    url = serve_app(broken.app(Settings(db_path=str(tmp_path / f"{name}.sqlite3"))))
    status, out = verify(capsys, broken.role, url)
    code, failed, warnings = FAULTS[name]
    assert status == code, out
    assert (status == 0) == (broken.severity == "warning" or name == "extra_output_field")
    assert set(re.findall(r"^  FAILED  (.*?)  \(consumer", out, flags=re.MULTILINE)) == failed, out
    shown = warned(out)
    assert {
        d: {row for row in rows for line in shown[d] if line.endswith(ROW.format(row))}
        for d, rows in warnings.items()
    } == warnings
    assert set(shown) == set(warnings), out


def test_a_brokers_pact_is_judged_by_the_shipped_contract_of_the_same_interaction(serve_app, capsys):
    # The broker's pact is not on disk: the code each interaction expects comes from the shipped
    # contract of the same consumer and description, so an empty reference in a refusal still passes
    # (judged as in an answer 0, it would fail) and the published result is Pact's own.
    broker = FakeBroker(read_pact(pact_dir() / pact_file_name(BANK, IPG)))
    broker.base = serve_app(broker.app)
    partner = Partner("ipg", auth_status=401, reversible="any")
    with serving_provider(partner) as url:
        status, out = verify(
            capsys, "ipg", url, "--broker-url", broker.base, "--publish-results", "--provider-version", "1"
        )
    assert status == 0, out
    assert set(warned(out)) == {
        "a token redemption with a wrong password",
        "a token redemption from a shortcode not linked to the bank",
    }
    ((_, body),) = broker.requested("POST", "/pact/results")
    assert json.loads(body)["success"] is False  # Pact's verdict knows no warnings
