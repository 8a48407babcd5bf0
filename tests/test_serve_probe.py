import httpx

from tests.fixtures.mocks import DOCUMENT_GENERATION


def test_served_mocks_answer_over_loopback(serve):
    served = serve()
    response = httpx.post(f"{served.bank_url}/token-generation", json=DOCUMENT_GENERATION)
    assert response.json()["output_ResponseCode"] == "0"
    assert served.stop() == 0
