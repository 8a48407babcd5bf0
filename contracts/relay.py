"""Provider-state changes go through a small relay on loopback: it forwards each to the provider's
state endpoint (with the control token, if any), and keeps the endpoint's reason when it refuses one,
which Pact's own report leaves out."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from mpesa_atm.contracts.loopback import LoopbackServer
from mpesa_atm.contracts.recorder import StateChange, Timeline
from mpesa_atm.contracts.report import StateFailure
from mpesa_atm.transport import Network, tls_problem

__all__ = ["StateRelay"]


class StateRelay(LoopbackServer):
    """A loopback HTTP server the verifier sends its state changes to; each is forwarded to the
    provider's endpoint. A refusal is answered 400, so that the verifier fails the interaction at
    once (it retries a 5xx for minutes), and kept with its reason."""

    def __init__(
        self,
        target: str,
        headers: dict[str, str],
        timeout: float,
        timeline: Timeline | None = None,
        network: Network | None = None,
    ) -> None:
        self.target = target
        self.timeline = timeline  # where each change goes too, when the verification is recorded
        self.failures: list[StateFailure] = []
        self.answers: list[tuple[int, bytes]] = []  # the endpoint's status and body, for each change
        network = network or Network()
        # The network's headers (a gateway's), then the control token's Authorization.
        self._client = httpx.Client(
            headers={**dict(network.headers), **headers}, timeout=timeout, verify=network.ssl_context()
        )
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = relay.forward(self.rfile.read(length))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the report says what matters

        super().__init__(Handler, "provider-state relay", self._client)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def forward(self, raw: bytes) -> tuple[int, bytes]:
        try:
            change = json.loads(raw)
        except ValueError:
            return 400, b'{"error": "the state change is not JSON"}'
        state, action = str(change.get("state")), str(change.get("action", "setup"))
        params = change.get("params") if isinstance(change.get("params"), dict) else {}
        if self.timeline is not None:
            self.timeline.add(StateChange(state, action))
        try:
            response = self._client.post(self.target, json=change)
        except httpx.HTTPError as exc:
            detail = f"could not reach {self.target}: {tls_problem(exc) or exc or type(exc).__name__}"
            status = None
        else:
            status = response.status_code
            self.answers.append((status, response.content))
            if response.is_success:
                # Values the state produced, for provider-state generators.
                try:
                    produced = response.json()
                except ValueError:
                    produced = {}
                return 200, json.dumps(produced if isinstance(produced, dict) else {}).encode()
            detail = f"HTTP {response.status_code} {_reason(response)}"
        self.failures.append(StateFailure(state, action, params, detail, status))
        return 400, json.dumps({"error": detail}).encode()


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return json.dumps(body)[:300]
