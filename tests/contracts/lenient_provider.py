"""The correct partners of tests/fuzz/lenient.py as Pact providers: their handler, plus the
provider-states endpoint they lack (POST /_harness/provider-states, as the mocks serve it:
mocks/provider_states.py), which sets the partner's tokens and what it already answered as each state
says. `text_plain` labels every answer text/plain (the body still JSON), as a partner that never set
its Content-Type would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mpesa_atm.fuzz.tokens import Token
from mpesa_atm.states import (
    A_TOKEN_EXISTS,
    A_TOKEN_WAS_GENERATED,
    NO_TOKEN_EXISTS,
    NO_TOKEN_WAS_GENERATED,
    THE_BANK_IS_REGISTERED,
    THE_REDEMPTION_WAS_MADE,
    THE_REVERSAL_WAS_MADE,
)
from tests.fuzz.lenient import PASSWORD, SHORTCODES, USERNAME, Partner, _handler, _Redemption, serving_handler

STATES_PATH = "/_harness/provider-states"


class StateRefused(Exception):
    """A state the partner cannot set up: answered 400 with the reason, as the mocks do."""


class ProviderStates:
    """The provider states of the contracts, set on a lenient Partner's own dictionaries."""

    def __init__(self, partner: Partner) -> None:
        self.partner = partner
        self.applied: list[tuple[str, str]] = []  # (action, state), in order

    def reset(self) -> None:
        partner = self.partner
        partner.tokens.clear()
        partner._state.clear()
        partner._answered.clear()
        partner._transactions.clear()

    def apply(self, state: str, params: dict[str, Any], action: str) -> None:
        self.applied.append((action, state))
        with self.partner._lock:
            if action == "teardown":
                self.reset()
                return
            setups = {
                "ipg": {
                    THE_BANK_IS_REGISTERED: self._bank_is_registered,
                    A_TOKEN_EXISTS: self._token_exists,
                    NO_TOKEN_EXISTS: self._no_token_exists,
                    THE_REDEMPTION_WAS_MADE: self._redemption_was_made,
                    THE_REVERSAL_WAS_MADE: self._reversal_was_made,
                },
                "bank": {
                    A_TOKEN_WAS_GENERATED: self._token_was_generated,
                    NO_TOKEN_WAS_GENERATED: self._no_token_was_generated,
                },
            }[self.partner.role]
            if state not in setups:
                raise StateRefused(f"the lenient {self.partner.role} has no provider state {state!r}")
            setups[state](params)

    # The iPG's states.
    def _bank_is_registered(self, params: dict[str, Any]) -> None:
        if (params.get("username"), params.get("password")) != (USERNAME, PASSWORD):
            raise StateRefused(f"no bank {params.get('username')!r} with this password")
        if params.get("shortcode") not in SHORTCODES:
            raise StateRefused(f"shortcode {params.get('shortcode')!r} is not linked to {USERNAME!r}")

    def _token_exists(self, params: dict[str, Any]) -> None:
        self.reset()
        token = Token(
            bank_transaction_ref=params["bank_transaction_ref"],
            transaction_id=params["transaction_id"],
            msisdn=params["msisdn"],
            amount=params["amount"],
            currency=params["currency"],
        )
        self.partner.tokens[token.bank_transaction_ref] = token

    def _no_token_exists(self, params: dict[str, Any]) -> None:
        self.reset()

    def _already_made(self, params: dict[str, Any], operation: str) -> None:
        """Records the answer 0 that the first call left: the same request repeated is a duplicate."""
        partner = self.partner
        token = partner.tokens.get(params["bank_transaction_ref"])
        if token is None:
            raise StateRefused(
                f"no token {params['bank_transaction_ref']!r}: set up {A_TOKEN_EXISTS!r} first"
            )
        fields = {
            "input_Username": USERNAME,
            "input_Password": PASSWORD,
            "input_BankShortcode": next(iter(SHORTCODES)),
            "input_CustomerMSISDN": token.msisdn,
            "input_Currency": token.currency,
            "input_Amount": token.amount,
            "input_ThirdPartyReference": params["third_party_reference"],
            "input_BankTransactionRef": token.bank_transaction_ref,
        }
        if operation == "reverse":
            fields["input_TransactionID"] = token.transaction_id
        key, _ = partner._ipg(fields, operation)
        partner._success(key, fields)
        state = partner._state.setdefault(token.bank_transaction_ref, _Redemption(token))
        if operation == "redeem":
            state.redeemed = True
        else:
            state.reversed = True

    def _redemption_was_made(self, params: dict[str, Any]) -> None:
        self._already_made(params, "redeem")

    def _reversal_was_made(self, params: dict[str, Any]) -> None:
        self._already_made(params, "reverse")

    # The bank's states.
    def _no_token_was_generated(self, params: dict[str, Any]) -> None:
        self.reset()

    def _token_was_generated(self, params: dict[str, Any]) -> None:
        self.reset()
        request = {
            "input_CustomerMSISDN": params["msisdn"],
            "input_Amount": params["amount"],
            "input_Currency": params["currency"],
            "input_TransactionID": params["transaction_id"],
        }
        if "account_number" in params:
            request["input_AccountNumber"] = params["account_number"]
        answer = self.partner._generate(json.dumps(request).encode(), "application/json", {})
        if answer.get("output_ResponseCode") != "0":
            raise StateRefused(f"the generation was answered {answer}")


def _provider_handler(partner: Partner, states: ProviderStates, content_type: str) -> type:
    base: Any = _handler(partner)

    class Handler(base):  # type: ignore[misc,valid-type]
        def do_POST(self) -> None:
            if self.path != STATES_PATH:
                super().do_POST()
                return
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                change = json.loads(raw)
                states.apply(str(change["state"]), change.get("params") or {}, change.get("action", "setup"))
            except StateRefused as refused:
                self._state_answer(400, {"detail": str(refused)})
            except (ValueError, KeyError, TypeError) as exc:
                self._state_answer(400, {"detail": f"not a provider-state change: {exc!r}"})
            else:
                self._state_answer(200, {})

        def _state_answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


@contextmanager
def serving_provider(partner: Partner, *, content_type: str = "application/json") -> Iterator[str]:
    """Serves `partner` with the provider-states endpoint, on a loopback port; yields its base URL."""
    states = ProviderStates(partner)
    with serving_handler(_provider_handler(partner, states, content_type)) as url:
        yield url
