from tests.fixtures.mocks import DOCUMENT_GENERATION


def test_document_generation_example_is_answered_success(mocks):
    response = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION)
    assert response.status_code == 200
    assert response.json()["output_ResponseCode"] == "0"
