"""The control API under /_harness/: health, reset, journal, seeding and the drivers of each side."""

from __future__ import annotations

import pytest
import yaml
from starlette.testclient import TestClient

from mpesa_atm.mocks import create_app
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION, DOCUMENT_TOKEN
from tests.fixtures.tokens import seed_token

WITHDRAWAL = {"msisdn": "243843330333", "amount": "200", "currency": "CDF"}


def test_health_names_the_role(mocks):
    assert mocks.ipg.get("/_harness/health").json() == {"status": "ok", "role": "ipg"}
    assert mocks.bank.get("/_harness/health").json() == {"status": "ok", "role": "bank"}


def test_each_mock_serves_its_spec_and_swagger_ui(mocks):
    spec = mocks.ipg.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/token-redemption", "/token-reversal"}
    assert set(mocks.bank.get("/openapi.json").json()["paths"]) == {"/token-generation"}
    assert "/withdrawals" in mocks.ipg.get("/_harness/openapi.json").json()["paths"]
    assert "/withdrawals" not in mocks.bank.get("/_harness/openapi.json").json()["paths"]
    assert mocks.ipg.get("/ui/").status_code == 200


@pytest.mark.parametrize("role", ["ipg", "bank"])
def test_the_served_documents_name_the_server_swagger_ui_sends_its_calls_to(mocks, role):
    """Swagger UI's "Servers" list, and where "Try it out" sends: the API's server as "/" (the page's
    own host), not connexion's "" (a server with no name); the control API's under its prefix."""
    mock = getattr(mocks, role)
    assert mock.get("/openapi.json").json()["servers"] == [{"url": "/"}]
    assert yaml.safe_load(mock.get("/openapi.yaml").text)["servers"] == [{"url": "/"}]
    assert mock.get("/_harness/openapi.json").json()["servers"] == [{"url": "/_harness"}]


def test_withdrawal_asks_the_bank_for_a_token_the_bank_can_then_redeem(mocks):
    response = mocks.ipg.post("/_harness/withdrawals", json=WITHDRAWAL)
    assert response.status_code == 201, response.text
    withdrawal = response.json()
    assert withdrawal["bank_response"]["output_ResponseCode"] == "0"
    assert len(withdrawal["bank_transaction_ref"]) == 32
    assert withdrawal["transaction_id"].isalnum()
    answer = mocks.ipg.post(
        "/token-redemption",
        json={**DOCUMENT_REDEMPTION, "input_BankTransactionRef": withdrawal["bank_transaction_ref"]},
    ).json()
    assert answer["output_ResponseCode"] == "0"


def test_bank_driver_redeems_and_reverses_its_own_token_at_the_ipg(mocks):
    token = mocks.ipg.post("/_harness/withdrawals", json=WITHDRAWAL).json()
    ref = token["bank_transaction_ref"]
    redeemed = mocks.bank.post("/_harness/redemptions", json={"bank_transaction_ref": ref}).json()
    assert redeemed["ipg_response"]["output_ResponseCode"] == "0"
    assert redeemed["request"]["input_Password"] == "********"
    assert redeemed["request"]["input_Amount"] == "200"
    reversed_ = mocks.bank.post("/_harness/reversals", json={"bank_transaction_ref": ref}).json()
    assert reversed_["ipg_response"]["output_ResponseCode"] == "0"
    assert reversed_["request"]["input_TransactionID"] == token["transaction_id"]


def test_bank_driver_can_send_a_mismatching_amount(mocks):
    ref = mocks.ipg.post("/_harness/withdrawals", json=WITHDRAWAL).json()["bank_transaction_ref"]
    answer = mocks.bank.post(
        "/_harness/redemptions", json={"bank_transaction_ref": ref, "amount": "999"}
    ).json()["ipg_response"]
    assert answer["output_ResponseCode"] == "-1"
    assert "input_Amount" in answer["output_ResponseDesc"]


def test_bank_driver_refuses_a_token_it_never_generated(mocks):
    response = mocks.bank.post("/_harness/redemptions", json={"bank_transaction_ref": "nope"})
    assert response.status_code == 404


def test_driver_answers_502_when_the_other_side_is_unreachable(settings, refused_url):
    closed = refused_url
    with TestClient(create_app("ipg", settings.replace(bank_url=closed))) as ipg:
        response = ipg.post("/_harness/withdrawals", json=WITHDRAWAL)
        assert response.status_code == 502
        assert "could not be reached" in response.json()["detail"]
        entry = ipg.get("/_harness/journal").json()["entries"][0]
        assert (entry["direction"], entry["status"]) == ("outbound", None)


def test_seeded_token_is_redeemable_and_a_second_seed_conflicts(mocks):
    seed_token(mocks.ipg)
    assert mocks.ipg.post("/_harness/tokens", json=DOCUMENT_TOKEN).status_code == 409
    answer = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION).json()
    assert answer["output_ResponseCode"] == "0"


def test_seeding_for_an_unknown_bank_is_404(mocks):
    response = mocks.ipg.post("/_harness/tokens", json={**DOCUMENT_TOKEN, "username": "ghost"})
    assert response.status_code == 404


def test_reset_forgets_tokens_transactions_and_journal(mocks):
    seed_token(mocks.ipg)
    mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)
    assert mocks.ipg.post("/_harness/reset").json()["reset"] == "ipg"
    assert mocks.ipg.get("/_harness/journal").json()["entries"] == []
    answer = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION).json()
    assert answer["output_ResponseCode"] == "-9"


def test_reset_of_one_role_keeps_the_other(mocks):
    first = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    mocks.ipg.post("/_harness/reset")
    again = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert again["output_BankTransactionRef"] == first["output_BankTransactionRef"]


def test_journal_lists_exchanges_newest_first_without_the_password(mocks):
    seed_token(mocks.ipg)
    mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)
    mocks.ipg.post("/token-reversal", json={**DOCUMENT_REDEMPTION, "input_TransactionID": "BVA12369A"})
    entries = mocks.ipg.get("/_harness/journal").json()["entries"]
    assert [e["operation"] for e in entries] == ["token_reversal", "token_redemption"]
    redemption = entries[1]
    assert redemption["request"]["input_Password"] == "********"
    assert redemption["response"]["output_ResponseCode"] == "0"
    assert (redemption["direction"], redemption["method"], redemption["status"]) == ("inbound", "POST", 200)
    assert "P@ssword123" not in mocks.ipg.get("/_harness/journal").text


def test_journal_filters_by_operation_and_limits(mocks):
    for _ in range(3):
        mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)
    mocks.ipg.post("/token-reversal", json={**DOCUMENT_REDEMPTION, "input_TransactionID": "BVA12369A"})
    only = mocks.ipg.get("/_harness/journal", params={"operation": "token_redemption", "limit": 2})
    assert [e["operation"] for e in only.json()["entries"]] == ["token_redemption"] * 2


def test_journal_masks_the_password_in_a_body_that_is_not_json(mocks):
    mocks.ipg.post(
        "/token-redemption",
        content=b'{"input_Password": "P@ssword123", broken',
        headers={"Content-Type": "application/json"},
    )
    entry = mocks.ipg.get("/_harness/journal").json()["entries"][0]
    assert entry["status"] == 400
    assert "P@ssword123" not in entry["request"]


def test_journal_keeps_the_newest_entries_within_its_limit(make_mocks):
    mocks = make_mocks(journal_limit=5)
    for _ in range(12):
        mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION)
    assert len(mocks.bank.get("/_harness/journal", params={"limit": 100}).json()["entries"]) == 5


@pytest.mark.parametrize("path", ["/_harness/reset", "/_harness/journal"])
def test_control_token_is_required_when_configured(make_mocks, path):
    mocks = make_mocks(control_token="s3cret")
    call = mocks.ipg.post if path.endswith("reset") else mocks.ipg.get
    assert call(path).status_code == 401
    assert call(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert mocks.ipg.get("/_harness/health").status_code == 200


def test_control_api_errors_are_plain_json_not_the_envelope(mocks):
    response = mocks.ipg.post("/_harness/tokens", json={"bank_transaction_ref": "x"})
    assert response.status_code == 400
    assert set(response.json()) == {"error", "detail"}


@pytest.mark.parametrize("spelling", ["token_redemption", "token-redemption"])
def test_journal_filter_takes_either_spelling_of_an_operation(mocks, spelling):
    mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION)
    mocks.ipg.post("/token-reversal", json={**DOCUMENT_REDEMPTION, "input_TransactionID": "BVA12369A"})
    entries = mocks.ipg.get("/_harness/journal", params={"operation": spelling}).json()["entries"]
    assert [e["operation"] for e in entries] == ["token_redemption"]


def test_journal_of_the_ipg_filters_the_token_generations_its_driver_sent(mocks):
    mocks.ipg.post("/_harness/withdrawals", json=WITHDRAWAL)
    entries = mocks.ipg.get("/_harness/journal", params={"operation": "token-generation"}).json()["entries"]
    assert [(e["direction"], e["operation"]) for e in entries] == [("outbound", "token_generation")]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/_harness/journal", {"operation": "token_redeemed"}, "query parameter operation must be one of"),
        ("/_harness/journal", {"limit": "0"}, "query parameter limit must be at least 1, not 0"),
        ("/_harness/journal", {"limit": str(2**64)}, "query parameter limit must be at most 10000"),
        ("/_harness/health", {"verbose": "1"}, "Extra query parameter(s) verbose not in spec"),
    ],
)
def test_refused_parameter_is_a_400_in_one_line_naming_it(mocks, path, params, message):
    response = mocks.bank.get(path, params=params)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert message in detail
    assert "Failed validating" not in detail


def test_deleting_a_fault_with_an_id_too_long_is_the_documented_400(mocks):
    response = mocks.ipg.delete("/_harness/faults/" + "0" * 65)
    assert response.status_code == 400
    assert response.json()["detail"].endswith("path parameter fault_id is longer than 64 characters")
    documented = mocks.ipg.get("/_harness/openapi.json").json()["paths"]["/faults/{fault_id}"]["delete"]
    assert "400" in documented["responses"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/_harness/faults", "GET, HEAD, POST"),
        ("PATCH", "/_harness/faults", "GET, HEAD, POST"),
        ("POST", "/_harness/modes", "GET, HEAD, PUT"),
        ("GET", "/_harness/faults/0123abcd", "DELETE"),
        ("POST", "/_harness/health", "GET, HEAD"),
        ("GET", "/_harness/reset", "POST"),
        ("GET", "/token-redemption", "POST"),
    ],
)
def test_method_not_allowed_lists_every_method_the_path_serves(mocks, method, path, allow):
    response = mocks.ipg.request(method, path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert f"; use {allow}" in response.text  # the control API's detail, the API's envelope
