"""Correct partners that are not the harness: small stdlib servers written from the document alone, each
as a real team might read it where the document is silent. They break no rule of the document, so a
campaign must never fail them (warnings are allowed: they differ from our choices, not from the document).

`Partner(role, ...)` options, each a reading of a point the document leaves open:
- content_type: "ignore" reads any body as JSON whatever its Content-Type; "require" refuses another one.
- refusal_status: the HTTP status of a refusal (the document names none): 200 (the code says it) or 400.
- echo: "whatever" echoes any input_ThirdPartyReference, however long; "valid" echoes only one of at most
  32 characters, else an empty one.
- formats: "lenient" checks only that the required fields are there (strings, not empty); "strict" also
  wants a 12-digit MSISDN, an amount in whole units and USD: stricter than our formats, and refused in the
  envelope as the document allows.
- not_found_status: the HTTP status of -9 Transaction Details Not Found: 200, or a REST-minded 404.
- auth_status: the HTTP status of -4 and -5: 200, or 401 and 403 (401 for -4, 403 for -5).
- insight_length: the length of the iPG's output_InsightReference (the document shows 19 characters and
  gives no limit): 16, or 36 (a UUID).
- reversible: which tokens the iPG reverses (the document says "Token Expiry/Reversal" and no more):
  "redeemed" (a dispense that failed), "unredeemed" (a token expiring back to the customer) or "any".
- tokens: the iPG's tokens (bank_transaction_ref -> Token), as if made by real withdrawals; one whose
  issued_at is more than 2 days (48 hours) ago is not found (-9).

Every partner refuses (-1) a reference over the document's "Maximum 32 characters". A partner broken on
purpose has one `bug`, the break of the document a real iPG was seen to make, that a campaign must fail:
- "pays_other_msisdn": pays a token to another input_CustomerMSISDN than the token's;
- "reverses_other_transaction": reverses a token quoting another input_TransactionID than the token's;
- "pays_expired": pays a token issued more than 2 days ago;
- "pays_long_reference": accepts, and pays, an input_ThirdPartyReference over 32 characters.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mpesa_atm.fuzz.tokens import Token

# The document's credentials (2.1.2.1 sample values) and the shortcodes linked to them.
USERNAME, PASSWORD, SHORTCODES = "fnb", "P@ssword123", frozenset({"49272"})

_BANK_FIELDS = ("input_CustomerMSISDN", "input_Amount", "input_Currency", "input_TransactionID")
_CREDENTIALS = ("input_Username", "input_Password", "input_BankShortcode")
_REDEMPTION_FIELDS = (
    *_CREDENTIALS,
    "input_CustomerMSISDN",
    "input_Currency",
    "input_Amount",
    "input_ThirdPartyReference",
    "input_BankTransactionRef",
)
_REVERSAL_FIELDS = (*_REDEMPTION_FIELDS, "input_TransactionID")
_DESCRIPTIONS = {
    "0": "Success",
    "-1": "Failure",
    "-3": "Duplicate",
    "-4": "Authentication Failed",
    "-5": "Bank Details Invalid",
    "-9": "Transaction Details Not Found",
}


class Refused(Exception):
    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise Refused("-1", "input_Amount is not a number") from None
    if not amount.is_finite():
        raise Refused("-1", "input_Amount is not a number")
    return amount


def _duplicate(first: dict[str, str]) -> dict[str, str]:
    """The answer to a repeat of a request answered 0: the first answer's references, with -3."""
    return {**first, "output_ResponseCode": "-3", "output_ResponseDesc": "Duplicate"}


@dataclass
class _Redemption:
    token: Token
    redeemed: bool = False
    reversed: bool = False


@dataclass
class Partner:
    role: str
    content_type: str = "ignore"
    refusal_status: int = 200
    echo: str = "valid"
    formats: str = "lenient"
    not_found_status: int = 200
    auth_status: int = 200
    insight_length: int = 16
    reversible: str = "redeemed"
    tokens: dict[str, Token] = field(default_factory=dict)
    bug: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _answered: dict[str, dict[str, str]] = field(default_factory=dict)  # request key -> its 0 answer
    _transactions: dict[str, str] = field(default_factory=dict)  # bank: TransactionID -> request key
    _state: dict[str, _Redemption] = field(default_factory=dict)  # iPG: token ref -> what happened
    answered: int = 0  # requests answered so far
    busy: threading.Event = field(default_factory=threading.Event)  # set at the 20th answer

    # Reading a request --------------------------------------------------------------------------

    def _fields(self, raw: bytes, media_type: str, required: tuple[str, ...]) -> dict[str, str]:
        if self.content_type == "require" and media_type != "application/json":
            raise Refused("-1", "Content-Type must be application/json")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Refused("-1", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Refused("-1", "the body is not a JSON object")
        fields: dict[str, str] = {}
        for name, value in body.items():
            if isinstance(value, (dict, list)) or value is None:
                raise Refused("-1", f"{name} is not a string")
            fields[name] = value if isinstance(value, str) else json.dumps(value)  # "All fields are strings"
        missing = [name for name in required if not fields.get(name, "").strip()]
        if missing:
            raise Refused("-1", f"{', '.join(missing)} missing")
        for name in ("input_ThirdPartyReference", "input_BankTransactionRef"):
            if len(fields.get(name, "")) > 32 and not (
                self.bug == "pays_long_reference" and name == "input_ThirdPartyReference"
            ):
                raise Refused("-1", f"{name} is over 32 characters")
        if self.formats == "strict":
            if not re.fullmatch(r"[0-9]{12}", fields["input_CustomerMSISDN"]):
                raise Refused("-1", "input_CustomerMSISDN must be 12 digits")
            if not re.fullmatch(r"[1-9][0-9]{0,5}", fields["input_Amount"]):
                raise Refused("-1", "input_Amount must be whole units")
            if fields["input_Currency"] != "USD":
                raise Refused("-1", "input_Currency must be USD")
        return fields

    def _echo(self, fields: dict[str, str]) -> str:
        sent = fields.get("input_ThirdPartyReference", "")
        return sent if self.echo == "whatever" or len(sent) <= 32 else ""

    # The operations ------------------------------------------------------------------------------

    def answer(self, path: str, raw: bytes, media_type: str) -> tuple[int, dict[str, str]]:
        operation = {
            "bank": {"/token-generation": self._generate},
            "ipg": {"/token-redemption": self._redeem, "/token-reversal": self._reverse},
        }[self.role].get(path)
        if operation is None:
            return 404, {"output_ResponseCode": "-1", "output_ResponseDesc": "Failure: no such API"}
        fields: dict[str, str] = {}
        with self._lock:
            self.answered += 1
            if self.answered >= 20:
                self.busy.set()
        try:
            with self._lock:
                return 200, operation(raw, media_type, fields)
        except Refused as refused:
            desc = _DESCRIPTIONS[refused.code] + (f": {refused.reason}" if refused.reason else "")
            answer = {"output_ResponseCode": refused.code, "output_ResponseDesc": desc}
            if self.role == "ipg":
                answer["output_InsightReference"] = ""
                answer["output_ThirdPartyReference"] = self._echo(fields)
            else:
                answer["output_BankTransactionRef"] = ""
                answer["output_BankDateTime"] = ""
            auth = {"-4": 401, "-5": 403} if self.auth_status != 200 else {}
            status = {"-1": self.refusal_status, "-9": self.not_found_status, **auth}.get(refused.code, 200)
            return status, answer

    def _generate(self, raw: bytes, media_type: str, fields: dict[str, str]) -> dict[str, str]:
        fields.update(self._fields(raw, media_type, _BANK_FIELDS))
        key = json.dumps(
            [
                fields["input_CustomerMSISDN"],
                str(_amount(fields["input_Amount"]).normalize()),
                fields["input_Currency"],
                fields["input_TransactionID"],
            ]
        )
        if key in self._answered:
            return _duplicate(self._answered[key])
        if self._transactions.get(fields["input_TransactionID"], key) != key:
            raise Refused("-1", "input_TransactionID already used for another transaction")
        if _amount(fields["input_Amount"]) <= 0:
            raise Refused("-1", "input_Amount must be positive")
        answer = {
            "output_ResponseCode": "0",
            "output_ResponseDesc": "Success",
            "output_BankTransactionRef": secrets.token_hex(16),
            "output_BankDateTime": datetime.now().strftime("%Y%m%d %H%M%S"),
        }
        self._answered[key] = answer
        self._transactions[fields["input_TransactionID"]] = key
        return answer

    def _authenticate(self, fields: dict[str, str]) -> None:
        if fields["input_Username"] != USERNAME or fields["input_Password"] != PASSWORD:
            raise Refused("-4")
        if fields["input_BankShortcode"] not in SHORTCODES:
            raise Refused("-5")

    def _ipg(self, fields: dict[str, str], operation: str) -> tuple[str, dict[str, str] | None]:
        """The request's duplicate key, and the first answer 0 to it if there was one."""
        key = json.dumps([operation, *(fields.get(name) for name in _REVERSAL_FIELDS)])
        return key, self._answered.get(key)

    def _success(self, key: str, fields: dict[str, str]) -> dict[str, str]:
        answer = {
            "output_ResponseCode": "0",
            "output_ResponseDesc": "Success",
            "output_InsightReference": (
                str(uuid.uuid4()) if self.insight_length == 36 else secrets.token_hex(8).upper()
            ),
            "output_ThirdPartyReference": self._echo(fields),
        }
        self._answered[key] = answer
        return answer

    def _token(self, fields: dict[str, str]) -> _Redemption:
        reference = fields["input_BankTransactionRef"]
        token = self.tokens.get(reference)
        if token is None:
            raise Refused("-9")
        return self._state.setdefault(reference, _Redemption(token))

    def _expired(self, token: Token) -> bool:
        """Whether the token was generated more than 2 days ago (section 4's -9)."""
        issued = token.issued_at
        return issued is not None and datetime.now(UTC) - issued > timedelta(hours=48)

    def _redeem(self, raw: bytes, media_type: str, fields: dict[str, str]) -> dict[str, str]:
        fields.update(self._fields(raw, media_type, _REDEMPTION_FIELDS))
        self._authenticate(fields)
        key, first = self._ipg(fields, "redeem")
        if first is not None:
            return _duplicate(first)
        state = self._token(fields)
        token = state.token
        if self._expired(token) and self.bug != "pays_expired":
            raise Refused("-9")
        if (
            (fields["input_CustomerMSISDN"] != token.msisdn and self.bug != "pays_other_msisdn")
            or fields["input_Currency"] != token.currency
            or _amount(fields["input_Amount"]) != _amount(token.amount)
        ):
            raise Refused("-1", "the details do not match the token")
        if state.redeemed or state.reversed:
            raise Refused("-1", "the token was already used")
        state.redeemed = True
        return self._success(key, fields)

    def _reverse(self, raw: bytes, media_type: str, fields: dict[str, str]) -> dict[str, str]:
        fields.update(self._fields(raw, media_type, _REVERSAL_FIELDS))
        self._authenticate(fields)
        key, first = self._ipg(fields, "reverse")
        if first is not None:
            return _duplicate(first)
        state = self._token(fields)
        if (
            fields["input_TransactionID"] != state.token.transaction_id
            and self.bug != "reverses_other_transaction"
        ):
            raise Refused("-9")
        if state.reversed:
            raise Refused("-1", "the token was already reversed")
        if self.reversible == "redeemed" and not state.redeemed:
            raise Refused("-1", "the token was not redeemed")
        if self.reversible == "unredeemed" and state.redeemed:
            raise Refused("-1", "the token was redeemed: it can no longer be reversed")
        state.reversed = True
        return self._success(key, fields)


def _handler(partner: Partner) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The head and the body go out in two writes: without TCP_NODELAY each answer waits out the
        # client's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            status, answer = partner.answer(self.path, raw, media_type)
            self._send(status, answer)

        def do_GET(self) -> None:
            self._send(404, {"output_ResponseCode": "-1", "output_ResponseDesc": "Failure: not found"})

        def _send(self, status: int, answer: dict[str, Any]) -> None:
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving(partner: Partner) -> Iterator[str]:
    """Serves `partner` on a loopback port of its own; yields its base URL."""
    with serving_handler(_handler(partner)) as url:
        yield url


@contextmanager
def serving_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serves `handler` on a loopback port of its own, a thread a connection; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # shutdown() waits for serve_forever's next look at its flag: every 0.5 s by default, half a second
    # lost at the end of each of the hundreds of campaigns the tests serve.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
