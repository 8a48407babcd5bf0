"""40 identical or competing calls at once against `mpesa-atm serve --workers 2` on one SQLite file:
one success, the rest duplicates or refusals, never a double spend, a 5xx or a leaked lock error."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, DOCUMENT_REVERSAL
from tests.fixtures.tokens import seed_token
from tests.reliability.helpers import burst

pytestmark = pytest.mark.network

N = 40


@pytest.fixture(scope="module")
def both(serve_for_module):
    return serve_for_module("--workers", "2")


@pytest.fixture
def served(both):
    for url in both.urls.values():
        httpx.post(f"{url}/_harness/reset").raise_for_status()
    yield both
    log = both.log()
    assert "Traceback" not in log, log
    assert "locked" not in log, log


@pytest.fixture
def seeded(served):
    seed_token(served.ipg_url)
    return served


def answers(responses: list[httpx.Response]) -> list[dict[str, str]]:
    """The envelopes, after checking that every call was answered 200 (no 5xx, no busy -7)."""
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text for r in responses]
    bodies = [r.json() for r in responses]
    for body in bodies:
        assert body["output_ResponseCode"] != "-7", body  # the database stayed locked
        assert "locked" not in body["output_ResponseDesc"], body
    return bodies


def by_code(bodies: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for body in bodies:
        grouped.setdefault(body["output_ResponseCode"], []).append(body)
    return grouped


def test_identical_token_generations_give_one_success_and_duplicates_with_its_reference(served):
    responses = asyncio.run(burst(f"{served.bank_url}/token-generation", [DOCUMENT_GENERATION] * N))
    grouped = by_code(answers(responses))
    assert sorted(grouped) == ["-3", "0"], grouped.keys()
    [first] = grouped["0"]
    assert len(grouped["-3"]) == N - 1
    for duplicate in grouped["-3"]:
        assert duplicate["output_BankTransactionRef"] == first["output_BankTransactionRef"]
        assert duplicate["output_BankDateTime"] == first["output_BankDateTime"]
    # Every answer was journalled before it was sent, whichever worker the journal is read from.
    journal = httpx.get(f"{served.bank_url}/_harness/journal", params={"limit": 100}).json()["entries"]
    assert len(journal) == N


def test_redemptions_of_one_token_with_different_references_spend_it_once(seeded):
    bodies = [{**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": f"atm-{i}"} for i in range(N)]
    grouped = by_code(answers(asyncio.run(burst(f"{seeded.ipg_url}/token-redemption", bodies))))
    assert sorted(grouped) == ["-1", "0"], grouped.keys()
    assert len(grouped["0"]) == 1  # no double spend
    for refused in grouped["-1"]:
        assert "already redeemed" in refused["output_ResponseDesc"], refused
    # Each answer echoes its own request's reference, so the refusals are told apart.
    echoed = sorted(body["output_ThirdPartyReference"] for group in grouped.values() for body in group)
    assert echoed == sorted(body["input_ThirdPartyReference"] for body in bodies)


def test_identical_redemptions_give_one_success_and_duplicates_with_its_reference(seeded):
    responses = asyncio.run(burst(f"{seeded.ipg_url}/token-redemption", [DOCUMENT_REDEMPTION] * N))
    grouped = by_code(answers(responses))
    assert sorted(grouped) == ["-3", "0"], grouped.keys()
    [first] = grouped["0"]
    assert len(grouped["-3"]) == N - 1
    assert {d["output_InsightReference"] for d in grouped["-3"]} == {first["output_InsightReference"]}


def test_identical_reversals_give_one_success_and_duplicates_with_its_reference(seeded):
    body = {**DOCUMENT_REVERSAL, "input_ThirdPartyReference": "reversal-1"}
    grouped = by_code(answers(asyncio.run(burst(f"{seeded.ipg_url}/token-reversal", [body] * N))))
    assert sorted(grouped) == ["-3", "0"], grouped.keys()
    [first] = grouped["0"]
    assert {d["output_InsightReference"] for d in grouped["-3"]} == {first["output_InsightReference"]}


def test_redemptions_racing_reversals_never_redeem_a_reversed_token(seeded):
    redemptions = [{**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": f"atm-{i}"} for i in range(N // 2)]
    reversals = [{**DOCUMENT_REVERSAL, "input_ThirdPartyReference": f"rev-{i}"} for i in range(N // 2)]

    async def race() -> tuple[list[httpx.Response], list[httpx.Response]]:
        return await asyncio.gather(
            burst(f"{seeded.ipg_url}/token-redemption", redemptions),
            burst(f"{seeded.ipg_url}/token-reversal", reversals),
        )

    redeemed, reversed_ = (by_code(answers(group)) for group in asyncio.run(race()))
    assert len(reversed_.get("0", [])) == 1  # reversed exactly once
    assert len(redeemed.get("0", [])) <= 1  # and redeemed at most once
    for refused in redeemed.get("-1", []):
        assert "already" in refused["output_ResponseDesc"], refused


def _generations(prefix: str) -> list[dict[str, str]]:
    return [{**DOCUMENT_GENERATION, "input_TransactionID": f"{prefix}{n:04d}"} for n in range(N)]


def _codes(url: str, bodies: list[dict[str, str]]) -> list[str]:
    return [body["output_ResponseCode"] for body in answers(asyncio.run(burst(url, bodies)))]


def test_fault_rules_and_modes_set_through_one_worker_hold_on_every_worker(served):
    """Each worker keeps a copy of the rules and modes: a change made through either is seen by all."""
    url = f"{served.bank_url}/token-generation"
    assert _codes(url, _generations("A")) == ["0"] * N  # both workers now hold a copy (no rules)
    rule = {"operation": "token-generation", "response_code": "-9", "times": 3}
    assert httpx.post(f"{served.bank_url}/_harness/faults", json=rule).status_code == 201
    codes = _codes(url, _generations("B"))
    assert (codes.count("-9"), codes.count("0")) == (3, N - 3), codes
    assert httpx.put(f"{served.bank_url}/_harness/modes", json={"offline": True}).status_code == 200
    assert _codes(url, _generations("C")) == ["-8"] * N
    assert httpx.post(f"{served.bank_url}/_harness/reset").status_code == 200
    assert _codes(url, _generations("D")) == ["0"] * N
