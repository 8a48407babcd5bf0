"""`mpesa-atm verify --report FILE.html --har FILE`: each interaction with its provider states, the
request, what the contract expects and what came back, rendered by headless Chromium; every request
the verifier sent in HAR 1.2. The recording proxy and state relay share one timeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mpesa_atm.cli import main
from mpesa_atm.contracts import BANK, IPG, pact_dir
from mpesa_atm.contracts.generate import pact_file_name, read_pact
from mpesa_atm.contracts.recorder import StateChange, group_by_interaction
from mpesa_atm.mocks import create_app
from mpesa_atm.reporting import Exchange
from mpesa_atm.settings import Settings
from tests.contracts.fixtures import AlteredAnswer
from tests.reporting.browser import rendered_dom
from tests.reporting.dom import parse
from tests.reporting.har import assert_har_1_2
from tests.reporting.selfcontained import assert_self_contained

SECTIONS = {"/token-redemption": "2.1", "/token-reversal": "2.2", "/token-generation": "3.1"}


def _interactions(consumer: str, provider: str) -> list[dict]:
    return read_pact(pact_dir() / pact_file_name(consumer, provider))["interactions"]


@pytest.mark.network
def test_a_verification_of_the_served_mocks_writes_a_page_and_a_har_of_every_interaction(
    serve, tmp_path, capsys
):
    served = serve()
    for role, consumer, provider in (("ipg", BANK, IPG), ("bank", IPG, BANK)):
        page, har = tmp_path / f"{role}.html", tmp_path / f"{role}.har"

        status = main(["verify", role, "--url", served.urls[role], "--report", str(page), "--har", str(har)])

        assert status == 0, capsys.readouterr()
        html = page.read_text()
        assert_self_contained(html)
        assert "P@ssword123" not in html and "P@ssword123" not in har.read_text()
        dom = parse(rendered_dom(page))
        assert dom.having("span", id="verdict")[0].text == "PASSED"
        expected = _interactions(consumer, provider)
        rows = {
            row.attrs["data-interaction"]: row for row in dom.having("tr") if "data-interaction" in row.attrs
        }
        assert set(rows) == {interaction["description"] for interaction in expected}
        cards = {
            card.having("h3")[0].text.split(" verified")[0].strip(): card for card in dom.having("article")
        }
        for interaction in expected:
            description = interaction["description"]
            section = SECTIONS[interaction["request"]["path"]]
            assert rows[description].having("td", class_="section")[0].text == section
            assert rows[description].having("span", class_="pill")[0].text == "verified"
            card = cards[description]
            states = [item.text for item in card.having("ol", class_="states")[0].having("li")]
            assert [s.split(" {")[0] for s in states] == [s["name"] for s in interaction["providerStates"]]
            code = interaction["response"]["body"]["content"]["output_ResponseCode"]
            assert f'"output_ResponseCode": "{code}"' in card.having("pre", class_="expected")[0].text
            assert f'"output_ResponseCode": "{code}"' in card.having("pre", class_="received")[0].text
            assert card.having("pre", class_="request")[0].text.startswith(f"POST {served.urls[role]}")
        assert dom.having("figure", id="chart-answers")[0].having("svg")
        document = json.loads(har.read_text())
        assert_har_1_2(document)
        assert len(document["log"]["entries"]) == len(expected)


@pytest.mark.network
def test_the_page_of_a_failed_interaction_shows_the_mismatch_and_what_came_back(serve_app, tmp_path, capsys):
    app = create_app("ipg", Settings(db_path=str(tmp_path / "broken.sqlite3")))
    url = serve_app(AlteredAnswer(app, path="/token-reversal", was="-3", becomes="-1"))
    page = tmp_path / "verify.html"

    assert main(["verify", "ipg", "--url", url, "--report", str(page)]) == 1

    capsys.readouterr()
    dom = parse(page.read_text())
    assert dom.having("span", id="verdict")[0].text == "FAILED"
    failed = dom.having("article", class_="failed")
    assert len(failed) == 1 and "a token reversal that repeats one already made" in failed[0].text
    # Its detail comes first, before the verified ones'; the table keeps the contracts' order.
    assert dom.having("article")[0] is failed[0]
    rows = [row.attrs["data-interaction"] for row in dom.having("tr") if "data-interaction" in row.attrs]
    assert rows == [interaction["description"] for interaction in _interactions(BANK, IPG)]
    link = dom.having("tr", class_="failed")[0].having("a")[0].attrs["href"]
    assert link == f"#{failed[0].attrs['id']}"
    assert "received \"-1\", the contract expects it to be equal to '-3'" in failed[0].having("ul")[0].text
    assert '"output_ResponseCode": "-1"' in failed[0].having("pre", class_="received")[0].text


def _exchange(path: str) -> Exchange:
    return Exchange(datetime.now(UTC), 0.01, "POST", f"http://p.test{path}", (), b"{}", 200, "OK")


def test_the_timeline_pairs_each_interaction_with_its_states_and_exchange():
    first, second, third = _exchange("/a"), _exchange("/b"), _exchange("/c")
    items = [
        StateChange("the bank is registered", "setup"),
        StateChange("a token exists", "setup"),
        first,
        StateChange("the bank is registered", "teardown"),
        StateChange("a token exists", "teardown"),
        StateChange("the bank is registered", "setup"),  # refused: nothing sent
        StateChange("the bank is registered", "teardown"),
        second,  # an interaction without states
        third,
    ]

    assert group_by_interaction(items) == [
        (("the bank is registered", "a token exists"), first),
        (("the bank is registered",), None),
        ((), second),
        ((), third),
    ]
