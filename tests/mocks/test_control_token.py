"""The control token as control.yaml's bearer scheme, enforced by connexion: open without a token,
refused in the control API's format with one, and shown to Swagger UI."""

from __future__ import annotations

import pytest

from mpesa_atm.mocks.control_token import TOKEN_NEEDED
from tests.fixtures.mocks import DOCUMENT_GENERATION

REFUSED = {"error": "Unauthorized", "detail": TOKEN_NEEDED}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Bearer", "s3cret", "Basic czNjcmV0", "Bearer s3cret-and-more", "Bearer s3cre"],
)
def test_a_control_call_without_the_token_is_refused_in_the_control_format(make_mocks, authorization):
    mocks = make_mocks(control_token="s3cret")
    headers = {"Authorization": authorization} if authorization else {}
    response = mocks.bank.get("/_harness/journal", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == REFUSED


def test_the_token_opens_the_control_api_and_the_scheme_name_is_any_case(make_mocks):
    mocks = make_mocks(control_token="s3cret")
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} s3cret"}
        assert mocks.bank.get("/_harness/journal", headers=headers).status_code == 200


def test_with_a_token_health_swagger_ui_and_the_api_stay_open(make_mocks):
    mocks = make_mocks(control_token="s3cret")
    assert mocks.bank.get("/_harness/health").json() == {"status": "ok", "role": "bank"}
    assert mocks.bank.get("/_harness/ui/").status_code == 200
    document = mocks.bank.get("/_harness/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["controlToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"controlToken": []}]  # what gives Swagger UI its Authorize button
    assert document["paths"]["/health"]["get"]["security"] == []
    generated = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION)
    assert generated.json()["output_ResponseCode"] == "0"


def test_without_a_token_the_control_api_is_open_and_its_document_says_so(mocks):
    assert mocks.bank.get("/_harness/journal").status_code == 200
    anything = {"Authorization": "Bearer anything"}
    assert mocks.bank.get("/_harness/journal", headers=anything).status_code == 200
    assert mocks.bank.post("/_harness/reset", headers={"Authorization": "junk"}).status_code == 200
    assert "security" not in mocks.bank.get("/_harness/openapi.json").json()


def test_an_unauthorised_control_call_is_not_journalled_and_changes_nothing(make_mocks):
    mocks = make_mocks(control_token="s3cret")
    authorised = {"Authorization": "Bearer s3cret"}
    assert mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).status_code == 200
    assert mocks.bank.post("/_harness/reset").status_code == 401
    entries = mocks.bank.get("/_harness/journal", headers=authorised).json()["entries"]
    assert [entry["url"] for entry in entries] == ["/token-generation"]
