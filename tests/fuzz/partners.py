"""Deliberately broken partners: the harness's correct mock with exactly one fault, each a bug seen in
real integrations, so the fuzzer must find that fault and name the check that covers it.

A fault rewrites the request before the mock reads it, or the answer before the client gets it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.mocks import create_app
from mpesa_atm.mocks.request_body import replaying
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import Together

Body = dict[str, Any]
Headers = dict[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None


RequestFault = Callable[[Body], Body]
AnswerFault = Callable[[Body | None, Answer], Answer]


class Faulty:
    """ASGI middleware: the mock behind it, with `on_request` and/or `on_answer` applied to API calls."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_request: RequestFault | None = None,
        on_answer: AnswerFault | None = None,
    ) -> None:
        self.app = app
        self.on_request = on_request
        self.on_answer = on_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_harness"):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            request: Body | None = json.loads(raw)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            request = None
        if request is not None and self.on_request is not None:
            raw = json.dumps(self.on_request(dict(request))).encode()
            scope = {
                **scope,
                "headers": [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                + [(b"content-length", str(len(raw)).encode())],
            }
        replay = replaying(raw, receive)

        status = 500
        headers: Headers = {}
        body_chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                body_chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        answer = Answer(status, headers, b"".join(body_chunks))
        if self.on_answer is not None:
            answer = self.on_answer(request, answer)
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
        out_headers["content-length"] = str(len(answer.content))
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})


def _json_answer(answer: Answer, changes: Body, status: int | None = None) -> Answer:
    body = answer.json()
    if not isinstance(body, dict):
        return answer
    return Answer(status or answer.status, answer.headers, json.dumps({**body, **changes}).encode())


def _code(answer: Answer) -> Any:
    body = answer.json()
    return body.get("output_ResponseCode") if isinstance(body, dict) else None


# Bank faults -------------------------------------------------------------------------------------


def short_reference(request: Body | None, answer: Answer) -> Answer:
    """Drops the reference's last character: 31 characters instead of 32."""
    body = answer.json()
    if not isinstance(body, dict) or "output_BankTransactionRef" not in body:
        return answer
    return _json_answer(answer, {"output_BankTransactionRef": body["output_BankTransactionRef"][:31]})


def impossible_date(request: Body | None, answer: Answer) -> Answer:
    """Writes the date-time with day 30 of February: the right shape, not a calendar date."""
    body = answer.json()
    if not isinstance(body, dict) or "output_BankDateTime" not in body:
        return answer
    return _json_answer(answer, {"output_BankDateTime": "20190230 " + body["output_BankDateTime"][9:]})


def no_duplicate_check(request: Body) -> Body:
    """Never sees a repeat: each call is made unique before the duplicate check could notice."""
    transaction_id = request.get("input_TransactionID")
    if isinstance(transaction_id, str) and re.fullmatch(r"[A-Za-z0-9]{1,32}", transaction_id):
        request["input_TransactionID"] = uuid.uuid4().hex[:12].upper()
    return request


def duplicate_with_new_reference(request: Body | None, answer: Answer) -> Answer:
    """Detects the duplicate but answers it with a new reference instead of the first one."""
    if _code(answer) != "-3":
        return answer
    body = answer.json()
    if "output_BankTransactionRef" in body:
        return _json_answer(answer, {"output_BankTransactionRef": uuid.uuid4().hex})
    return _json_answer(answer, {"output_InsightReference": uuid.uuid4().hex[:19]})


def needs_account_number(request: Body | None, answer: Answer) -> Answer:
    """Crashes (500) when the optional input_AccountNumber is left out of a valid-looking request."""
    if request is None or "input_AccountNumber" in request or _code(answer) not in ("0", "-3"):
        return answer
    return Answer(
        500, {"content-type": "text/plain"}, b"Internal Server Error: KeyError 'input_AccountNumber'"
    )


def refuses_without_account_number(request: Body | None, answer: Answer) -> Answer:
    """Refuses (-1, in its envelope, HTTP 200) a valid request without the optional input_AccountNumber:
    the account is looked up from it, and no lookup is a failure."""
    if request is None or "input_AccountNumber" in request or _code(answer) not in ("0", "-3"):
        return answer
    return _json_answer(
        answer,
        {"output_ResponseCode": "-1", "output_ResponseDesc": "Failure: input_AccountNumber is required"},
    )


def duplicate_says_success(request: Body | None, answer: Answer) -> Answer:
    """Answers a repeat with the first answer, its code changed to -3 and its description left Success."""
    if _code(answer) != "-3":
        return answer
    return _json_answer(answer, {"output_ResponseDesc": "Success"})


def refusals_say_success(request: Body | None, answer: Answer) -> Answer:
    """Builds every answer from the success template: a refusal says "Success" beside its own code."""
    code = _code(answer)
    if not isinstance(code, str) or code == "0":
        return answer
    return _json_answer(answer, {"output_ResponseDesc": "Success"})


def plain_text_errors(request: Body | None, answer: Answer) -> Answer:
    """Answers refusals with a bare text body, outside the envelope."""
    if answer.status < 400:
        return answer
    return Answer(answer.status, {"content-type": "text/plain"}, b"Bad Request")


def numeric_response_code(request: Body | None, answer: Answer) -> Answer:
    """Writes output_ResponseCode as a JSON number (0, -1), the int of its own code table."""
    code = _code(answer)
    if not isinstance(code, str) or not re.fullmatch(r"-?[0-9]", code):
        return answer
    return _json_answer(answer, {"output_ResponseCode": int(code)})


def iso8583_success(request: Body | None, answer: Answer) -> Answer:
    """Says success with ISO 8583's "00" instead of the document's "0"."""
    if _code(answer) != "0":
        return answer
    return _json_answer(answer, {"output_ResponseCode": "00"})


def accepts_invalid(request: Body | None, answer: Answer) -> Answer:
    """Answers a request it could not validate with HTTP 200 and 0 Success."""
    if answer.status != 400:
        return answer
    return _json_answer(answer, {"output_ResponseCode": "0", "output_ResponseDesc": "Success"}, status=200)


def refuses_with_422(request: Body | None, answer: Answer) -> Answer:
    """Refuses invalid requests with HTTP 422, which the document does not list."""
    if answer.status != 400:
        return answer
    return Answer(422, answer.headers, answer.content)


def refuses_with_200(request: Body | None, answer: Answer) -> Answer:
    """Refuses invalid requests with HTTP 200 (and -1), as if they were business outcomes."""
    if answer.status != 400:
        return answer
    return Answer(200, answer.headers, answer.content)


def text_content_type(request: Body | None, answer: Answer) -> Answer:
    """Sends the JSON envelope labelled text/plain."""
    return Answer(
        answer.status, {**answer.headers, "content-type": "text/plain; charset=utf-8"}, answer.content
    )


def extra_output_field(request: Body | None, answer: Answer) -> Answer:
    """Adds an undocumented output field."""
    return _json_answer(answer, {"output_ServerName": "atm-gw-01"})


def crashes_on_cents(request: Body | None, answer: Answer) -> Answer:
    """Crashes (500) on amounts with decimals, e.g. 200.50."""
    if request is None or "." not in str(request.get("input_Amount", "")):
        return answer
    return Answer(500, {"content-type": "application/json"}, b'{"error": "NumberFormatException"}')


def slow_on_longest_account_number(request: Body | None, answer: Answer) -> Answer:
    """Answers an input_AccountNumber of 32 digits, the longest the formats allow, 0.2 s late (a slower
    lookup); the answer itself is right. Blocking, as that lookup would be: the campaign times it."""
    if request is not None and len(str(request.get("input_AccountNumber", ""))) == 32:
        time.sleep(0.2)
    return answer


def crashes_on_longest_account_number(request: Body | None, answer: Answer) -> Answer:
    """Crashes (500) on an input_AccountNumber of 32 digits, the longest the formats allow (its column
    is narrower)."""
    if request is None or len(str(request.get("input_AccountNumber", ""))) != 32:
        return answer
    return Answer(500, {"content-type": "text/plain"}, b"ORA-12899: value too large for column ACCOUNT_NO")


# iPG faults --------------------------------------------------------------------------------------


def refusals_without_insight_reference(request: Body | None, answer: Answer) -> Answer:
    """Leaves output_InsightReference out of every answer but 0 (the document: String Required)."""
    body = answer.json()
    if not isinstance(body, dict) or body.get("output_ResponseCode") == "0":
        return answer
    body.pop("output_InsightReference", None)
    return Answer(answer.status, answer.headers, json.dumps(body).encode())


def pays_over_the_limit(request: Body | None, answer: Answer) -> Answer:
    """Takes references longer than the document's "Maximum 32 characters" (its column is wider) and
    answers 0 Success where the schema refused them."""
    long = request is not None and any(
        isinstance(request.get(field), str) and len(request[field]) > 32
        for field in ("input_ThirdPartyReference", "input_BankTransactionRef")
    )
    if not long or answer.status != 400:
        return answer
    assert request is not None
    return _json_answer(
        answer,
        {
            "output_ResponseCode": "0",
            "output_ResponseDesc": "Success",
            "output_InsightReference": uuid.uuid4().hex[:19],
            "output_ThirdPartyReference": str(request.get("input_ThirdPartyReference", "")),
        },
        status=200,
    )


def echoes_bank_reference(request: Body | None, answer: Answer) -> Answer:
    """Echoes input_BankTransactionRef where input_ThirdPartyReference belongs."""
    if request is None or answer.status != 200 or "input_BankTransactionRef" not in request:
        return answer
    return _json_answer(answer, {"output_ThirdPartyReference": str(request["input_BankTransactionRef"])[:32]})


def ignores_password(request: Body) -> Body:
    """Checks the username only: any password is taken as the right one."""
    if request.get("input_Username") == "fnb":
        request["input_Password"] = "P@ssword123"
    return request


def ignores_shortcode(request: Body) -> Body:
    """Never compares the shortcode with the ones linked to the username."""
    if request.get("input_Username") == "fnb":
        request["input_BankShortcode"] = "49272"
    return request


def redeems_twice(request: Body | None, answer: Answer) -> Answer:
    """Pays out a token that was already redeemed (the state check answers, and is overruled)."""
    body = answer.json()
    if not isinstance(body, dict) or "already redeemed" not in str(body.get("output_ResponseDesc", "")):
        return answer
    return _json_answer(answer, {"output_ResponseCode": "0", "output_ResponseDesc": "Success"})


def _paid(request: Body | None, answer: Answer, reason: str, *, reversal: bool) -> Answer:
    """0 Success instead of the refusal whose description says `reason`, for a reversal or a redemption."""
    body = answer.json()
    if request is None or ("input_TransactionID" in request) != reversal or not isinstance(body, dict):
        return answer
    if reason not in str(body.get("output_ResponseDesc", "")):
        return answer
    return _json_answer(answer, {"output_ResponseCode": "0", "output_ResponseDesc": "Success"})


def pays_another_amount(request: Body | None, answer: Answer) -> Answer:
    """Pays a token out for another amount than it was generated for (the mismatch is overruled)."""
    return _paid(request, answer, "input_Amount does not match the token", reversal=False)


def reverses_twice(request: Body | None, answer: Answer) -> Answer:
    """Reverses a token that was already reversed: the customer is refunded twice."""
    return _paid(request, answer, "already reversed", reversal=True)


def pays_unknown_tokens(request: Body | None, answer: Answer) -> Answer:
    """Pays out a redemption whose input_BankTransactionRef it never issued (the -9 is overruled)."""
    if request is None or "input_TransactionID" in request or _code(answer) != "-9":
        return answer
    return _json_answer(answer, {"output_ResponseCode": "0", "output_ResponseDesc": "Success"})


@dataclass(frozen=True)
class Broken:
    """A broken partner: its role, its one fault, the checks that must (and may) report it, and whether
    the fault breaks the document (a failure) or only a choice of ours (a warning: exit 0 unless strict)."""

    name: str
    role: str
    expected: str
    also: frozenset[str] = field(default_factory=frozenset)
    on_request: RequestFault | None = None
    on_answer: AnswerFault | None = None
    severity: str = "failure"
    campaign: dict[str, Any] = field(default_factory=dict)  # run_campaign's options that find the fault

    def app(self, settings: Settings) -> ASGIApp:
        if self.role == "ipg":
            bank = create_app("bank", settings)
            inner = Together(create_app("ipg", settings, transport=httpx.ASGITransport(app=bank)), bank)
        else:
            inner = create_app("bank", settings)
        return Faulty(inner, on_request=self.on_request, on_answer=self.on_answer)


SCHEMA = "response_schema_conformance"
BROKEN: tuple[Broken, ...] = (
    Broken("short_reference", "bank", "bank_reference_length", on_answer=short_reference),
    Broken("impossible_date", "bank", "bank_date_time_format", on_answer=impossible_date),
    Broken("no_duplicate_check", "bank", "replay_is_duplicate", on_request=no_duplicate_check),
    Broken("duplicate_new_reference", "bank", "replay_is_duplicate", on_answer=duplicate_with_new_reference),
    Broken(
        "needs_account_number",
        "bank",
        "optional_field_left_out",
        # The boundary cases of input_Currency run only the checks that read one answer: their 500s
        # without input_AccountNumber are not_a_server_error's.
        frozenset({"not_a_server_error"}),
        on_answer=needs_account_number,
    ),
    Broken(
        "refuses_without_account_number",
        "bank",
        "optional_field_left_out",
        on_answer=refuses_without_account_number,
    ),
    # The document's sample, sent by two phases, is a repeat of its own: description_matches_code
    # may find its -3 too.
    Broken(
        "duplicate_says_success",
        "bank",
        "replay_is_duplicate",
        frozenset({"description_matches_code"}),
        on_answer=duplicate_says_success,
    ),
    # Its -3 to a replay says Success too, which replay_is_duplicate finds.
    Broken(
        "refusals_say_success",
        "bank",
        "description_matches_code",
        frozenset({"replay_is_duplicate"}),
        on_answer=refusals_say_success,
    ),
    Broken(
        "plain_text_errors",
        "bank",
        "json_envelope",
        frozenset(),
        on_answer=plain_text_errors,
    ),
    Broken("iso8583_success", "bank", "mapped_response_code", on_answer=iso8583_success),
    Broken("numeric_response_code", "bank", "json_envelope", on_answer=numeric_response_code),
    Broken(
        "accepts_invalid",
        "bank",
        "invalid_request_not_success",
        # Its replay of an invalid request is answered 0 again, not -3: a duplicate paid twice.
        frozenset({"replay_is_duplicate"}),
        on_answer=accepts_invalid,
    ),
    Broken(
        "refuses_with_422", "bank", "status_code_conformance", on_answer=refuses_with_422, severity="warning"
    ),
    Broken(
        "refuses_with_200",
        "bank",
        "negative_data_rejection",
        frozenset(),
        on_answer=refuses_with_200,
        severity="warning",
    ),
    Broken(
        "text_content_type",
        "bank",
        "content_type_conformance",
        on_answer=text_content_type,
        severity="warning",
    ),
    Broken("extra_output_field", "bank", SCHEMA, on_answer=extra_output_field, severity="warning"),
    Broken(
        "crashes_on_cents",
        "bank",
        "not_a_server_error",
        frozenset(),
        on_answer=crashes_on_cents,
    ),
    # Its fault breaks no rule of the document: the operator's bound finds it.
    Broken(
        "slow_on_longest_account_number",
        "bank",
        "response_time",
        on_answer=slow_on_longest_account_number,
        campaign={"max_response_time": 0.1},
    ),
    Broken(
        "crashes_on_longest_account_number",
        "bank",
        "not_a_server_error",
        frozenset(),
        on_answer=crashes_on_longest_account_number,
    ),
    # Its -3 to a replay lacks the first answer's reference, which replay_is_duplicate finds; its -4 and
    # -5 to the probes lack it too.
    Broken(
        "refusals_without_insight_reference",
        "ipg",
        SCHEMA,
        frozenset({"replay_is_duplicate", "wrong_password_rejected", "other_shortcode_rejected"}),
        on_answer=refusals_without_insight_reference,
    ),
    # Its replay of such a request is answered 0 again, not -3; the stateful phase's long-reference
    # redemption of a token it made is paid too (token_lifecycle says it there).
    Broken(
        "pays_over_the_limit",
        "ipg",
        "invalid_request_not_success",
        frozenset({"replay_is_duplicate", "token_lifecycle"}),
        on_answer=pays_over_the_limit,
    ),
    Broken("echoes_bank_reference", "ipg", "third_party_reference_echoed", on_answer=echoes_bank_reference),
    Broken("ignores_password", "ipg", "wrong_password_rejected", on_request=ignores_password),
    Broken("ignores_shortcode", "ipg", "other_shortcode_rejected", on_request=ignores_shortcode),
    Broken(
        "ipg_duplicate_new_reference", "ipg", "replay_is_duplicate", on_answer=duplicate_with_new_reference
    ),
    # A second redemption answered 0 is not a success it remembers, so its replay is no duplicate either.
    Broken(
        "redeems_twice", "ipg", "token_lifecycle", frozenset({"replay_is_duplicate"}), on_answer=redeems_twice
    ),
    # Each answers 0 where the mock refused, and the same again to the replay: no duplicate either.
    Broken(
        "pays_another_amount",
        "ipg",
        "token_lifecycle",
        frozenset({"replay_is_duplicate"}),
        on_answer=pays_another_amount,
    ),
    Broken(
        "reverses_twice",
        "ipg",
        "token_lifecycle",
        frozenset({"replay_is_duplicate"}),
        on_answer=reverses_twice,
    ),
    Broken(
        "pays_unknown_tokens",
        "ipg",
        "unknown_token_paid",
        frozenset({"replay_is_duplicate"}),
        on_answer=pays_unknown_tokens,
    ),
)
