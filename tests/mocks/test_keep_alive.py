"""An idle keep-alive connection outlives the clients' own expiry: a client that reuses a connection it
still holds, as HTTP/1.1 allows, gets its answer instead of a closed connection.

uvicorn closes an idle connection after 5 s, the very time after which httpx stops reusing one, so a
call sent at about 5 s could meet the server's close (the steady benchmark saw one ReadError in
792,000 calls). Over loopback against `mpesa-atm serve`, as a partner's client would be.
"""

from __future__ import annotations

import http.client
import json
import time

import pytest

from mpesa_atm.cli import KEEP_ALIVE_SECONDS
from tests.fixtures.mocks import DOCUMENT_GENERATION
from tests.reliability.helpers import host_port

pytestmark = pytest.mark.network

IDLE = 6.0  # past uvicorn's default 5 s, and httpx's
JSON = {"Content-Type": "application/json"}


def test_a_connection_idle_past_common_client_expiry_still_answers(serve):
    assert KEEP_ALIVE_SECONDS > IDLE
    host, port = host_port(serve(role="bank").bank_url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        codes = []
        for transaction_id in ("KA0001", "KA0002"):
            body = json.dumps({**DOCUMENT_GENERATION, "input_TransactionID": transaction_id})
            connection.request("POST", "/token-generation", body=body, headers=JSON)
            response = connection.getresponse()
            codes.append(json.loads(response.read())["output_ResponseCode"])
            assert response.getheader("connection", "").lower() != "close"
            if transaction_id == "KA0001":
                first_socket = connection.sock
                time.sleep(IDLE)
        assert connection.sock is first_socket  # the same connection, not a new one
        assert codes == ["0", "0"]
    finally:
        connection.close()
