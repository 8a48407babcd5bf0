"""The document's rules as `@schemathesis.check` functions, and the catalogue of every check a campaign runs.

A check that needs to send a second request (a replay, a wrong password) does so through the probe
context the campaign sets; outside a campaign those checks skip, the others work in any schemathesis run.
"""

from __future__ import annotations

import contextvars
import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, NoReturn

import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.core.failures import Failure, Severity

from mpesa_atm.codes import DESCRIPTIONS, ResponseCode
from mpesa_atm.fuzz.expectations import Expectation
from mpesa_atm.operations import ROLES, Role, operations

__all__ = [
    "BUILTIN_CHECKS",
    "CHECKS",
    "CheckInfo",
    "ContractViolation",
    "Credentials",
    "Probe",
    "checks_for",
    "probing",
]

MAPPED_CODES = frozenset(code.value for code in ResponseCode)
_REFERENCE = re.compile(r"^[!-~]{1,32}$")
_DATE_TIME = re.compile(r"^[0-9]{8} [0-9]{6}$")
_SAMPLE_ACCOUNT_NUMBER = "85000001222840"  # the document's (3.1.2.2)


@dataclass(frozen=True)
class Credentials:
    """What a bank calls the iPG with (2.1.2.1): shared upon integration."""

    username: str
    password: str
    shortcode: str
    other_shortcode: str | None = None  # one not linked to username; None: the shortcode's last digit changed

    def unlinked_shortcode(self) -> str:
        if self.other_shortcode:
            return self.other_shortcode
        last = self.shortcode[-1]
        swapped = str((int(last) + 1) % 10) if last.isdigit() else "0"
        return self.shortcode[:-1] + swapped

    def wrong_password(self) -> str:
        # Fixed, so that findings (which quote it) never disclose anything of the real one.
        return "wrong-password" if self.password != "wrong-password" else "wrong-password-2"


@dataclass
class Probe:
    """What checks that send extra requests need from the campaign running them."""

    credentials: Credentials | None
    send: Callable[[Case], Response]
    fresh: Callable[[str], str]  # a new value of a reference field, e.g. fresh("input_TransactionID")
    reproduce: Callable[[Case], str]  # a curl command for a case
    history: list[str] = field(default_factory=list)  # curl commands that set this case up, in order
    expectation: Expectation | None = None
    probes_enabled: bool = True


_PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("mpesa_atm_fuzz_probe", default=None)


@contextmanager
def probing(probe: Probe) -> Iterator[Probe]:
    """Makes `probe` the context of the checks run in this block (in this thread)."""
    token = _PROBE.set(probe)
    try:
        yield probe
    finally:
        _PROBE.reset(token)


class ContractViolation(Failure):
    """A rule of the document broken: what the partner sent, what the document says, and how to replay it."""

    code: ClassVar[str] = "MPESA"
    kind_title: ClassVar[str] = "M-Pesa Generic ATM rule broken"

    def __init__(
        self,
        *,
        check: str,
        case: Case,
        title: str,
        received: str,
        documented: str,
        reproduce: tuple[str, ...] = (),
    ) -> None:
        message = f"Received: {received}\nDocumented: {documented}"
        super().__init__(operation=case.operation.label, title=title, message=message, severity=Severity.HIGH)
        self.check = check
        self.received = received
        self.documented = documented
        self.reproduce = reproduce

    @property
    def _unique_key(self) -> str:
        return self.check


# Helpers -------------------------------------------------------------------------------------------


def _operation_id(case: Case) -> str | None:
    raw = case.operation.definition.raw
    value = raw.get("operationId") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) else None


def _role(case: Case) -> Role | None:
    operation = operations().get(_operation_id(case) or "")
    return operation.role if operation else None


def _answer(response: Response) -> dict[str, Any] | None:
    try:
        parsed = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _text(answer: Mapping[str, Any] | None, key: str) -> str | None:
    value = answer.get(key) if answer is not None else None
    return value if isinstance(value, str) else None


def _excerpt(response: Response, limit: int = 300) -> str:
    text = response.content[:limit].decode("utf-8", errors="replace")
    more = "..." if len(response.content) > limit else ""
    return f"HTTP {response.status_code} {text!r}{more}"


def _describe(code: str | None, answer: Mapping[str, Any] | None) -> str:
    desc = _text(answer, "output_ResponseDesc")
    return f"{code!r}" + (f" ({desc})" if desc else "")


def _documented_code(code: ResponseCode) -> str:
    return f"{code.value} {DESCRIPTIONS[code]}"


def is_valid_request(case: Case) -> bool:
    """Whether the case's body is a JSON object the operation's schema accepts."""
    if not isinstance(case.body, dict) or (case.media_type or "").split(";")[0] != "application/json":
        return False
    body = case.operation.get_body_for_media_type("application/json")
    return body is not None and bool(body.is_valid(case.body))


def _with_credentials(case: Case, probe: Probe) -> bool:
    credentials = probe.credentials
    body = case.body
    return (
        credentials is not None
        and isinstance(body, dict)
        and body.get("input_Username") == credentials.username
        and body.get("input_Password") == credentials.password
        and body.get("input_BankShortcode") == credentials.shortcode
    )


def _derived(case: Case, body: Any) -> Case:
    """A new case of the same operation and media type with `body`."""
    return case.operation.Case(body=body, media_type=case.media_type or "application/json")


def _steps(probe: Probe, *cases: Case) -> tuple[str, ...]:
    return (*probe.history, *(probe.reproduce(c) for c in cases))


def _fail(check: str, case: Case, title: str, received: str, documented: str, *steps: str) -> NoReturn:
    raise ContractViolation(
        check=check, case=case, title=title, received=received, documented=documented, reproduce=steps
    )


# Checks of every answer -------------------------------------------------------------------------------
# A check returns True when it does not apply (schemathesis counts it as skipped), None when it passed.


@schemathesis.check
def json_envelope(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every answer is a JSON object carrying output_ResponseCode and output_ResponseDesc as strings."""
    if _role(case) is None:
        return True
    answer = _answer(response)
    documented = "a JSON object with string output_ResponseCode and output_ResponseDesc (2.1.3, 2.2.3, 3.1.3)"
    if answer is None:
        _fail("json_envelope", case, "The answer is not a JSON object", _excerpt(response), documented)
    missing = [
        key for key in ("output_ResponseCode", "output_ResponseDesc") if not isinstance(answer.get(key), str)
    ]
    if missing:
        _fail(
            "json_envelope",
            case,
            f"The answer lacks {', '.join(missing)}",
            _excerpt(response),
            documented,
        )
    return None


@schemathesis.check
def mapped_response_code(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """output_ResponseCode is one of the codes of the Response Code Mapping (section 4)."""
    code = _text(_answer(response), "output_ResponseCode")
    if _role(case) is None or code is None:
        return True
    if code not in MAPPED_CODES:
        _fail(
            "mapped_response_code",
            case,
            "The response code is not in the Response Code Mapping",
            f"output_ResponseCode {code!r}",
            "one of 0, -1, -2, -3, -4, -5, -6, -7, -8, -9 (section 4)",
        )
    return None


@schemathesis.check
def invalid_request_not_success(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request the schema rejects (a field missing, malformed, extra, or not JSON) is never answered 0."""
    if _role(case) is None or is_valid_request(case):
        return True
    code = _text(_answer(response), "output_ResponseCode")
    if code == ResponseCode.SUCCESS:
        _fail(
            "invalid_request_not_success",
            case,
            "A request that breaks the schema was answered Success",
            f"{_excerpt(response)} to a request the schema rejects",
            "an unreadable or invalid request is refused: HTTP 400 with -1 Failure, never 0 Success",
        )
    return None


@schemathesis.check
def third_party_reference_echoed(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: output_ThirdPartyReference is the request's input_ThirdPartyReference."""
    if _role(case) != "ipg" or not isinstance(case.body, dict):
        return True
    sent = case.body.get("input_ThirdPartyReference")
    echoed = _text(_answer(response), "output_ThirdPartyReference")
    if not isinstance(sent, str) or not _REFERENCE.match(sent) or echoed is None:
        return True
    # A business outcome (HTTP 200) must echo; a refusal may also leave it empty.
    allowed = {sent} if response.status_code == 200 else {sent, ""}
    if echoed not in allowed:
        _fail(
            "third_party_reference_echoed",
            case,
            "output_ThirdPartyReference does not echo the request",
            f"output_ThirdPartyReference {echoed!r} for input_ThirdPartyReference {sent!r}",
            "the request's input_ThirdPartyReference, unchanged (2.1.3.1, 2.2.3.1)",
        )
    return None


@schemathesis.check
def bank_reference_length(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: output_BankTransactionRef has exactly 32 characters."""
    reference = _text(_answer(response), "output_BankTransactionRef")
    if _role(case) != "bank" or reference is None:
        return True
    if len(reference) != 32:
        _fail(
            "bank_reference_length",
            case,
            "output_BankTransactionRef is not 32 characters long",
            f"{reference!r} ({len(reference)} characters)",
            "32 characters, e.g. '12345678123412341234123456789abc' (3.1.3.1)",
        )
    return None


@schemathesis.check
def bank_date_time_format(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: output_BankDateTime is a real calendar date and time written YYYYMMDD HHMMSS."""
    value = _text(_answer(response), "output_BankDateTime")
    if _role(case) != "bank" or value is None:
        return True
    valid = bool(_DATE_TIME.match(value))
    if valid:
        try:
            datetime.strptime(value, "%Y%m%d %H%M%S")
        except ValueError:
            valid = False
    if not valid:
        _fail(
            "bank_date_time_format",
            case,
            "output_BankDateTime is not a date and time in YYYYMMDD HH24MISS",
            repr(value),
            "a real date and time, format YYYYMMDD HH24MISS, e.g. '20190611 223210' (3.1.3.1)",
        )
    return None


# Checks that send a second request ---------------------------------------------------------------------


@schemathesis.check
def replay_is_duplicate(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A replay of a request answered 0 is -3 Duplicate carrying the first answer's reference."""
    probe = _PROBE.get()
    role = _role(case)
    answer = _answer(response)
    if probe is None or role is None or _text(answer, "output_ResponseCode") != ResponseCode.SUCCESS:
        return True
    key = "output_InsightReference" if role == "ipg" else "output_BankTransactionRef"
    first = _text(answer, key)
    replay = _derived(case, copy.deepcopy(case.body))
    again = probe.send(replay)
    second = _answer(again)
    code = _text(second, "output_ResponseCode")
    documented = f"{_documented_code(ResponseCode.DUPLICATE)} with the first answer's {key} {first!r}"
    fields = "(2.1, 2.2 duplicate check)" if role == "ipg" else "(3.1 duplicate check)"
    if code != ResponseCode.DUPLICATE:
        _fail(
            "replay_is_duplicate",
            case,
            "A replay of a successful request is not answered Duplicate",
            f"{_describe(code, second)} to the replay ({_excerpt(again, 160)})",
            f"{documented} {fields}",
            *_steps(probe, case, replay),
        )
    if _text(second, key) != first:
        _fail(
            "replay_is_duplicate",
            case,
            f"The Duplicate answer does not carry the first {key}",
            f"{key} {_text(second, key)!r} in the Duplicate answer",
            f"{documented} {fields}",
            *_steps(probe, case, replay),
        )
    return None


def _probe_with(
    check: str,
    case: Case,
    field: str,
    value: Callable[[Credentials], str],
    expected: ResponseCode,
    *,
    title: str,
    received: str,
    documented: str,
) -> bool | None:
    """Sends a valid iPG request made with the campaign's credentials again with `field` set to
    `value(credentials)` and fails unless the answer is `expected`; skips (True) any other case.

    `received` may quote {answer} (the code and description) and {value}; `documented`, {expected}.
    """
    probe = _PROBE.get()
    if probe is None or not probe.probes_enabled or _role(case) != "ipg" or not is_valid_request(case):
        return True
    if not _with_credentials(case, probe):
        return True
    assert probe.credentials is not None and isinstance(case.body, dict)
    changed = value(probe.credentials)
    # A new input_ThirdPartyReference, so that the iPG does not take the variant for a duplicate.
    body = {
        **case.body,
        field: changed,
        "input_ThirdPartyReference": probe.fresh("input_ThirdPartyReference"),
    }
    variant = _derived(case, body)
    answer = _answer(probe.send(variant))
    code = _text(answer, "output_ResponseCode")
    if code != expected:
        _fail(
            check,
            case,
            title,
            received.format(answer=_describe(code, answer), value=changed),
            documented.format(expected=_documented_code(expected)),
            *_steps(probe, variant),
        )
    return None


@schemathesis.check
def wrong_password_rejected(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: a valid request with a wrong password is -4 Authentication Failed."""
    return _probe_with(
        "wrong_password_rejected",
        case,
        "input_Password",
        Credentials.wrong_password,
        ResponseCode.AUTHENTICATION_FAILED,
        title="A request with a wrong password is not answered Authentication Failed",
        received="{answer} to the same request with input_Password {value!r}",
        documented="{expected}: Bank's username and password is incorrect (section 4)",
    )


@schemathesis.check
def other_shortcode_rejected(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """iPG: the right credentials with a shortcode not linked to them is -5 Bank Details Invalid."""
    return _probe_with(
        "other_shortcode_rejected",
        case,
        "input_BankShortcode",
        Credentials.unlinked_shortcode,
        ResponseCode.BANK_DETAILS_INVALID,
        title="The right credentials with another shortcode are not answered Bank Details Invalid",
        received="{answer} with input_BankShortcode {value!r}",
        documented="{expected}: Bank shortcode does not match shortcode linked to username and password"
        " (section 4)",
    )


@schemathesis.check
def optional_field_left_out(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Bank: leaving out the optional input_AccountNumber never causes a server error."""
    probe = _PROBE.get()
    if (
        probe is None
        or not probe.probes_enabled
        or _role(case) != "bank"
        or not isinstance(case.body, dict)
        or not is_valid_request(case)
    ):
        return True
    # The same request with and without the field (a new TransactionID each): only a 5xx that comes
    # and goes with the field is blamed on leaving it out.
    body = {k: v for k, v in case.body.items() if k != "input_AccountNumber"}
    if "input_AccountNumber" in case.body:
        if response.status_code >= 500:
            return True
        without = _derived(case, {**body, "input_TransactionID": probe.fresh("input_TransactionID")})
        without_response = probe.send(without)
        with_status = response.status_code
    else:
        if response.status_code < 500:
            return None
        without, without_response = case, response
        with_field = _derived(
            case,
            {
                "input_AccountNumber": _SAMPLE_ACCOUNT_NUMBER,
                **body,
                "input_TransactionID": probe.fresh("input_TransactionID"),
            },
        )
        with_status = probe.send(with_field).status_code
        if with_status >= 500:
            return None  # it fails either way: not_a_server_error reports it
    if without_response.status_code >= 500:
        _fail(
            "optional_field_left_out",
            case,
            "Leaving out the optional input_AccountNumber caused a server error",
            f"{_excerpt(without_response)} without input_AccountNumber (with it: HTTP {with_status})",
            "input_AccountNumber is optional (3.1.2.1): a 2xx or 4xx answer in the envelope, never 5xx",
            *_steps(probe, without),
        )
    return None


@schemathesis.check
def token_lifecycle(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Stateful run: the answer is the one the token's history calls for (redeemed once, reversed once)."""
    probe = _PROBE.get()
    expectation = probe.expectation if probe is not None else None
    if probe is None or expectation is None:
        return True
    answer = _answer(response)
    code = _text(answer, "output_ResponseCode")
    if not expectation.allows(code):
        _fail(
            "token_lifecycle",
            case,
            "The answer does not fit the token's history",
            _describe(code, answer),
            expectation.documented,
            *_steps(probe, case),
        )
    return None


# The catalogue ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckInfo:
    name: str
    roles: tuple[Role, ...]
    meaning: str
    function: Callable[[CheckContext, Response, Case], bool | None]


def _builtin(name: str) -> Callable[[CheckContext, Response, Case], bool | None]:
    from schemathesis.checks import CHECKS as REGISTRY
    from schemathesis.checks import load_all_checks

    load_all_checks()
    function = REGISTRY.get_one(name)
    assert callable(function)
    return function  # type: ignore[return-value]


# Schemathesis's own checks that a campaign runs, with what they mean for this API.
BUILTIN_CHECKS: tuple[tuple[str, str], ...] = (
    ("not_a_server_error", "no answer is a 5xx"),
    ("status_code_conformance", "the HTTP status is one the document allows (200, 400, 413, 415)"),
    ("content_type_conformance", "the Content-Type is the documented application/json"),
    ("response_schema_conformance", "the answer has exactly the documented output fields, in their formats"),
    ("negative_data_rejection", "a request the schema rejects gets a 4xx, not 200"),
)

_OWN: tuple[tuple[Callable[[CheckContext, Response, Case], bool | None], tuple[Role, ...]], ...] = (
    (json_envelope, ROLES),
    (mapped_response_code, ROLES),
    (invalid_request_not_success, ROLES),
    (third_party_reference_echoed, ("ipg",)),
    (wrong_password_rejected, ("ipg",)),
    (other_shortcode_rejected, ("ipg",)),
    (replay_is_duplicate, ROLES),
    (bank_reference_length, ("bank",)),
    (bank_date_time_format, ("bank",)),
    (optional_field_left_out, ("bank",)),
    (token_lifecycle, ("ipg",)),
)


def _catalogue() -> tuple[CheckInfo, ...]:
    builtins = tuple(CheckInfo(name, ROLES, meaning, _builtin(name)) for name, meaning in BUILTIN_CHECKS)
    own = tuple(
        CheckInfo(function.__name__, roles, (function.__doc__ or "").strip(), function)
        for function, roles in _OWN
    )
    return builtins + own


CHECKS: tuple[CheckInfo, ...] = _catalogue()


def checks_for(role: Role, names: tuple[str, ...] | None = None) -> tuple[CheckInfo, ...]:
    """The checks that apply to `role`, all of them or only those named."""
    chosen = tuple(info for info in CHECKS if role in info.roles)
    if names is None:
        return chosen
    known = {info.name for info in CHECKS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(unknown)}")
    return tuple(info for info in chosen if info.name in names)
