"""The partner under test and the way to it: its Target, a session, sending a case, the control API of
a harness mock, and a curl reproducer of what was sent."""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from schemathesis import Case, Response
from schemathesis.python import asgi

from mpesa_atm.errors import ConfigError, TargetUnreachable, UsageError
from mpesa_atm.fuzz.checks import Credentials
from mpesa_atm.fuzz.curl import curl_command
from mpesa_atm.operations import CONTROL_PREFIX, Role, operation, operations_of
from mpesa_atm.reachable import wait_until_listening
from mpesa_atm.reporting.exchange import Exchange, headers_of
from mpesa_atm.settings import ENV_PREFIX, Settings
from mpesa_atm.transport import Network, refused_outside_envelope, tls_problem

__all__ = [
    "CONTROL_TOKEN_VARIABLE",
    "ControlAnswer",
    "ControlRefused",
    "NoAnswer",
    "Target",
    "Timed",
    "call_control",
    "check_control_token",
    "control_available",
    "open_session",
    "reason",
    "refused",
    "reproduce",
    "response_code",
    "send",
]

_ASGI_BASE = f"http://{asgi.HOST}"
# Reproducers of control-API calls never print the control token: they read it from this variable.
CONTROL_TOKEN_VARIABLE = ENV_PREFIX + "CONTROL_TOKEN"


@dataclass(frozen=True)
class Target:
    """The partner under test: its role, and a base URL or an ASGI app (in process)."""

    role: Role
    url: str | None = None
    app: Any = None
    paths: Mapping[str, str] = field(default_factory=dict)  # operationId -> the partner's path
    credentials: Credentials | None = None  # iPG targets: the bank's username, password and shortcode
    timeout: float = Settings.client_timeout  # seconds to wait for an answer
    wait: float = 0.0  # seconds to wait for a target that refuses connections while it starts
    network: Network = field(default_factory=Network)  # TLS, client certificate, headers
    # Sent as 'Authorization: Bearer TOKEN' on the calls to a mock's control API, and on no other call.
    control_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.url is None) == (self.app is None):
            raise UsageError("give the target a URL or an app, not both nor neither")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise UsageError(f"must be an http:// or https:// URL, not {self.url!r}", argument="url")
        if not self.timeout > 0:
            raise UsageError("must be positive", argument="timeout")
        if not self.wait >= 0:
            raise UsageError("must be 0 seconds or more", argument="wait")
        own = [op.id for op in operations_of(self.role)]
        unknown = sorted(set(self.paths) - set(own))
        if unknown:
            raise UsageError(
                f"no operation {', '.join(unknown)} on the {self.role} side (it has {', '.join(own)})"
            )
        for operation_id, path in self.paths.items():
            if not path.startswith("/"):
                raise UsageError(f"the path of {operation_id} must start with '/', not {path!r}")
        paths = [self.path(operation_id) for operation_id in own]
        if len(set(paths)) < len(paths):
            raise UsageError(f"two operations at the same path: {', '.join(paths)}")
        if self.role == "ipg" and self.credentials is None:
            raise UsageError("an iPG target needs the bank's credentials (username, password, shortcode)")

    @property
    def base_url(self) -> str:
        return (self.url or _ASGI_BASE).rstrip("/")

    @property
    def label(self) -> str:
        return self.url or "the app in process"

    def path(self, operation_id: str) -> str:
        return self.paths.get(operation_id, operation(operation_id).path)


class NoAnswer(Exception):
    """The partner answered nothing to a request: the connection failed, was closed, or timed out."""

    def __init__(
        self, reason: str, *, timed_out: bool, request: requests.PreparedRequest | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out
        self.request = request  # as it was sent, when it got that far


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    return body if isinstance(body, bytes) else str(body).encode()


class Timed:
    """Times one request from its creation and makes its Exchange: `timed.answered(response)`, or
    `timed.unanswered(request, url, reason)`."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = datetime.now(UTC)
        self._clock = time.perf_counter()

    def _elapsed(self) -> float:
        return time.perf_counter() - self._clock

    def answered(self, response: Response) -> Exchange:
        request = response.request
        return Exchange(
            started=self.started,
            elapsed=self._elapsed(),
            method=request.method or "POST",
            url=request.url or "",
            request_headers=headers_of(request.headers),
            request_body=_body_bytes(request.body),
            status=response.status_code,
            reason=response.message,
            response_headers=headers_of(response.headers),
            response_body=response.content,
            label=self.label,
        )

    def unanswered(self, request: requests.PreparedRequest | None, url: str, reason: str) -> Exchange:
        return Exchange(
            started=self.started,
            elapsed=self._elapsed(),
            method=(request.method if request is not None else None) or "POST",
            url=(request.url if request is not None else None) or url,
            request_headers=headers_of(request.headers) if request is not None else (),
            request_body=_body_bytes(request.body if request is not None else None),
            status=None,
            reason=reason,
            label=self.label,
        )


@contextmanager
def open_session(target: Target) -> Iterator[requests.Session]:
    """A session to the target: over the network as `target.network` says, or to its app in process
    (with the network's headers)."""
    if target.app is not None:
        with asgi.get_client(target.app) as client:
            client.headers.update(dict(target.network.headers))
            yield client
    else:
        with target.network.session() as session:
            yield session


def send(target: Target, session: requests.Session, case: Case) -> Response:
    """Sends `case` once, redirects not followed; raises NoAnswer when nothing comes back."""
    try:
        if target.app is not None:
            return case.call(session=session)
        # Not case.call(): its transport sends a request again on a fresh connection when a reused
        # one drops it, which would hide a partner that resets connections mid-call.
        kwargs = case.as_transport_kwargs(base_url=target.base_url)
        kwargs.pop("timeout", None)
        answer = session.request(**kwargs, timeout=target.timeout, allow_redirects=False)
        return Response.from_any(answer)
    except requests.RequestException as exc:
        request = exc.request if isinstance(exc.request, requests.PreparedRequest) else None
        raise NoAnswer(reason(exc), timed_out=isinstance(exc, requests.Timeout), request=request) from None


@dataclass(frozen=True)
class ControlAnswer:
    """What the mock's control API answered: its status, its body parsed (None when not JSON), a curl
    command that sends the call again, and the exchange."""

    status: int
    body: Any
    curl: str
    exchange: Exchange


class ControlRefused(ConfigError):
    """The mock's control API refused the harness (HTTP 401 or 403): it was served with a control
    token, and the campaign has not that one. Nothing the harness asked of it was done."""

    def __init__(self, message: str, *, status: int, given: bool) -> None:
        super().__init__(message)
        self.status = status
        self.given = given  # whether a control token was sent (a wrong one) or none


def _control_headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.control_token}"} if target.control_token else {}


def _control_refused(target: Target, url: str, response: Any) -> None:
    """Raises ControlRefused when the control API answered 401 or 403 to `url`."""
    if response.status_code not in (401, 403):
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    said = f" ({' '.join(str(detail).split())[:120]})" if detail else ""
    sent = "the control token given is not its own" if target.control_token else "no control token was given"
    name = "iPG" if target.role == "ipg" else "bank"
    raise ControlRefused(
        f"the {name} mock's control API refused {url} with HTTP {response.status_code}{said}: {sent}",
        status=response.status_code,
        given=bool(target.control_token),
    )


def call_control(
    target: Target, session: requests.Session, path: str, body: Mapping[str, Any]
) -> ControlAnswer:
    """POSTs `body` to the mock's control API at `path`, with the target's control token if it has one.
    Raises ControlRefused when the control API refuses the harness (401, 403): nothing was done."""
    url = f"{target.base_url}{CONTROL_PREFIX}{path}"
    timed = Timed(f"POST {CONTROL_PREFIX}{path}")
    try:
        response = session.post(
            url, json=dict(body), headers=_control_headers(target), timeout=target.timeout
        )
    except requests.RequestException as exc:
        raise TargetUnreachable(f"{url} stopped answering: {reason(exc)}") from None
    _control_refused(target, url, response)
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    exchange = timed.answered(Response.from_any(response))
    options = target.network.curl_options()
    if target.control_token:  # read from the environment, never printed
        options += ["-H", shlex.quote("Authorization: Bearer ") + f'"${CONTROL_TOKEN_VARIABLE}"']
    curl = curl_command(url, dict(body), options=options)
    return ControlAnswer(response.status_code, parsed, curl, exchange)


def check_control_token(target: Target) -> None:
    """Reads the control API's modes (a call that needs the token when the mock has one), so that a
    campaign that would use the control API learns before its first case whether it may: raises
    ControlRefused when it may not, TargetUnreachable when nothing answers."""
    url = f"{target.base_url}{CONTROL_PREFIX}/modes"
    with open_session(target) as session:
        try:
            response = session.get(url, headers=_control_headers(target), timeout=target.timeout)
        except requests.RequestException as exc:
            raise TargetUnreachable(f"{url} stopped answering: {reason(exc)}") from None
    _control_refused(target, url, response)


def control_available(target: Target) -> bool:
    """Whether the target is an mpesa-atm mock of its role (it has the control API). The campaign's
    first request: raises TargetUnreachable when nothing answers, TLS fails, or a layer in front of
    the API refuses it (401 or 403 outside the envelope: a gateway that wants a header)."""
    if target.url is not None and target.wait > 0:
        with contextlib.suppress(OSError):  # said below, in the words of the request that fails
            wait_until_listening(target.url, wait=target.wait, timeout=target.timeout)
    with open_session(target) as session:
        url = f"{target.base_url}{CONTROL_PREFIX}/health"
        try:
            response = session.get(url, timeout=target.timeout)
        except requests.RequestException as exc:
            said = reason(exc)
            hint = target.network.closed_hint(url) if said in _CLOSED else ""
            raise TargetUnreachable(
                f"cannot reach the {target.role} at {target.label}: {said}{hint}"
            ) from None
    refused(target, response.status_code, response.content, url)
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 200 and isinstance(body, dict) and body.get("role") == target.role


def refused(target: Target, status: int, body: bytes, url: str) -> None:
    """Raises TargetUnreachable when an answer is a 401 or 403 outside the API's envelope: a gateway
    (or another layer before the API) refused the request, and would refuse every case."""
    if refused_outside_envelope(status, body):
        words = " ".join(body.decode("utf-8", errors="replace").split())[:120]
        said = f" ({words})" if words else ""
        raise TargetUnreachable(
            f"the {target.role} at {target.label} refused {url} with HTTP {status}{said}, outside the "
            "API's envelope: give what its gateway wants with -H 'Name: value' (or --cert and --key)"
        )


def reproduce(target: Target, case: Case) -> str:
    """A curl command that sends `case` to the target again, over the same network."""
    credentials = target.credentials
    return curl_command(
        target.base_url + case.formatted_path,
        case.body,
        media_type=case.media_type or "application/json",
        secret=credentials.password if credentials else None,
        options=target.network.curl_options(),
    )


def response_code(response: Response) -> str | None:
    """The answer's output_ResponseCode, or None when it has none."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    code = body.get("output_ResponseCode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


_REASONS = {
    "Connection refused": "connection refused",
    "Connection reset by peer": "connection reset by peer",
    "RemoteDisconnected": "the connection was closed without an answer",
    "Name or service not known": "name or service not known",
    "No route to host": "no route to host",
    "timed out": "timed out",
}


_CLOSED = (_REASONS["RemoteDisconnected"], _REASONS["Connection reset by peer"])


def reason(exc: BaseException) -> str:
    """What went wrong on the wire, in a few words (requests nests the cause in its message)."""
    tls = tls_problem(exc)
    if tls is not None:
        return tls
    text = str(exc)
    for marker, words in _REASONS.items():
        if marker in text:
            return words
    return type(exc).__name__ + (f": {text[:200]}" if text else "")
