"""The app factory: one connexion AsyncApp per role, its store, rules and error envelopes.

`create_app("ipg" | "bank", settings)` builds a mock; `ipg_app` / `bank_app` build one from the
environment for uvicorn's `factory=True` workers.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from http import HTTPStatus
from typing import Any

import connexion
import httpx
from connexion.context import scope as call_scope
from connexion.exceptions import ProblemException
from connexion.json_schema import resolve_refs
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.resolver import Resolver
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import Scope

from mpesa_atm.codes import ResponseCode, bank_answer, ipg_answer
from mpesa_atm.errors import StoreBusy
from mpesa_atm.masking import Secrets
from mpesa_atm.mocks.access_log import AccessLog
from mpesa_atm.mocks.bank import BankRules
from mpesa_atm.mocks.connection_faults import ConnectionFaults
from mpesa_atm.mocks.control import ControlHandlers
from mpesa_atm.mocks.control_token import TOKEN_NEEDED, secured
from mpesa_atm.mocks.fastpath import FastPath, Handler, Operation
from mpesa_atm.mocks.faults import Faults, Modes
from mpesa_atm.mocks.ipg import IpgRules
from mpesa_atm.mocks.request_body import BODY_KEY, RequestBody
from mpesa_atm.mocks.request_journal import RequestJournal
from mpesa_atm.mocks.retention import Retention
from mpesa_atm.mocks.served_spec import SwaggerUI
from mpesa_atm.mocks.spec_once import validate_each_document_once
from mpesa_atm.mocks.storage import BUSY, Storage, open_store
from mpesa_atm.mocks.validation import VALIDATORS
from mpesa_atm.mocks.values import bank_date_time, new_bank_transaction_ref, new_insight_reference
from mpesa_atm.operations import CONTROL_PREFIX
from mpesa_atm.settings import Settings, load_settings
from mpesa_atm.spec import Role, load_spec

__all__ = ["bank_app", "create_app", "frozen", "ipg_app"]

log = logging.getLogger("mpesa_atm.mocks")

Answer = dict[str, str]
_ECHOABLE = re.compile(r"^[!-~]{1,32}$")


def _echoed_reference(scope: Scope) -> str:
    """The request's input_ThirdPartyReference when it can be read and is well formed, else ""."""
    try:
        body = json.loads(scope.get(BODY_KEY, b""))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    value = body.get("input_ThirdPartyReference") if isinstance(body, dict) else None
    return value if isinstance(value, str) and _ECHOABLE.match(value) else ""


class _Envelopes:
    """Answers to requests that never reach the rules, in the API's own envelope."""

    def __init__(self, role: Role, settings: Settings) -> None:
        self.role = role
        self.settings = settings
        self.served = ""  # the API's paths, for the 404 answer
        self.allowed: list[tuple[re.Pattern[str], str]] = []  # each path's methods, for the 405's Allow

    def __call__(self, scope: Scope, status: int, reason: str) -> tuple[int, dict[str, Any]]:
        path: str = scope["path"]
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return status, {"error": HTTPStatus(status).phrase, "detail": reason}
        return status, self.answer(ResponseCode.FAILURE, reason, _echoed_reference(scope))

    def answer(self, code: ResponseCode, reason: str | None, third_party_reference: str) -> dict[str, str]:
        """An API answer that no rule made: a refusal, or a fault."""
        if self.role == "ipg":
            return ipg_answer(
                code,
                insight_reference=new_insight_reference(),
                third_party_reference=third_party_reference,
                reason=reason,
            )
        return bank_answer(
            code,
            bank_transaction_ref=new_bank_transaction_ref(),
            bank_date_time=bank_date_time(self.settings.clock(), self.settings.timezone),
            reason=reason,
        )

    def for_fault(self, code: ResponseCode, reason: str | None, body: Mapping[str, Any]) -> dict[str, str]:
        reference = body.get("input_ThirdPartyReference")
        return self.answer(code, reason, reference if isinstance(reference, str) else "")

    def response(
        self, request: ConnexionRequest, status: int, reason: str, headers: dict[str, str] | None = None
    ) -> ConnexionResponse:
        status, body = self(request.scope, status, reason)
        return ConnexionResponse(
            status_code=status,
            body=json.dumps(body),
            mimetype="application/json",
            headers=headers or {},
        )

    def problem(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        return self.response(request, exc.status, self.reason(exc), dict(exc.headers or {}))

    def refusal(self, scope: Scope, exc: ProblemException) -> tuple[int, dict[str, Any]]:
        """The answer to a request connexion's validation would refuse with `exc` (the fast path)."""
        return self(scope, exc.status, self.reason(exc))

    def internal_error(self, scope: Scope, exc: Exception) -> tuple[int, dict[str, Any]]:
        """The answer to a call whose handler failed (a bug of the mock), as `internal` words it."""
        return self(scope, 500, f"internal error of the mock ({type(exc).__name__})")

    @staticmethod
    def reason(exc: ProblemException) -> str:
        if exc.status == 415 and exc.detail and exc.detail.startswith("charset "):
            reason = f"Content-Type must be application/json in UTF-8, not {exc.detail.split(':')[0]}"
        elif exc.status == 415:
            reason = "Content-Type must be application/json"
        elif exc.status == 400 and exc.detail == "RequestBody is required":  # connexion's words
            reason = "invalid request: the body is empty; send a JSON object"
        elif exc.status == 400:
            reason = f"invalid request: {_one_line(exc.detail)}"  # see mocks/validation.py
        elif exc.status == 401:  # the control token, missing or wrong (mocks/control_token.py)
            reason = TOKEN_NEEDED
        else:
            reason = _one_line(exc.detail or exc.title or HTTPStatus(exc.status).phrase)
        return reason

    def not_found(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        return self.response(request, 404, f"no API at {request.url.path}; this mock serves {self.served}")

    def method_not_allowed(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        # connexion routes each method of a path apart: the 405 it raises lists one route's methods.
        path = request.url.path
        allowed = next((methods for pattern, methods in self.allowed if pattern.match(path)), None)
        allowed = allowed or headers.pop("allow", None) or headers.get("Allow") or "POST"
        headers["Allow"] = allowed
        return self.response(
            request, 405, f"{request.method} is not allowed on {request.url.path}; use {allowed}", headers
        )

    def not_utf8(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        return self.response(request, 400, "invalid request: the body is not UTF-8")

    def store_busy(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        """The store busy or out of reach past the busy timeout: not the mock's bug but the database's
        state, said as such (503 with Retry-After on the control API; Faults.run answers the API's
        calls -7 before it gets here)."""
        path: str = request.scope["path"]
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            return self.response(request, 503, f"{BUSY}: {exc}; try again", {"Retry-After": "1"})
        body = self.busy(request.scope)
        return ConnexionResponse(status_code=200, body=json.dumps(body), mimetype="application/json")

    def busy(self, scope: Scope) -> dict[str, str]:
        """The -7 System Too Busy that goes instead of an API answer the store could not keep."""
        return self.answer(ResponseCode.SYSTEM_TOO_BUSY, BUSY, _echoed_reference(scope))

    def internal(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        return self.response(request, 500, f"internal error of the mock ({type(exc).__name__})")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:500]


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allow_headers(paths: Mapping[str, Any], prefix: str = "") -> list[tuple[re.Pattern[str], str]]:
    """Each path of a document (under `prefix`) and the Allow of its 405: every method it serves."""
    table = []
    for path, item in paths.items():
        methods = {method.upper() for method in item if method in _METHODS}
        if "GET" in methods:
            methods.add("HEAD")  # starlette answers HEAD where GET is served
        table.append((compile_path(prefix + path)[0], ", ".join(sorted(methods))))
    return table


def _closing(
    store: Storage, role: Role, settings: Settings
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A lifespan that prunes the role's old rows while the server runs (mocks/retention.py) and
    closes `store` when it shuts the app down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        # A worker starts: calls counted under max_concurrency by a worker that died are forgotten.
        try:
            await store.calls_clear(role)
        except StoreBusy as exc:  # the database out of reach: the worker serves, answering -7 meanwhile
            log.warning("a worker of the %s mock starts without clearing its calls under way: %s", role, exc)
        retention = Retention(store, role, settings).start()
        try:
            yield
        finally:
            await retention.stop()
            store.close()

    return lifespan


def create_app(
    role: Role,
    settings: Settings | None = None,
    *,
    store: Storage | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> connexion.AsyncApp:
    """A mock of `role` ("ipg" or "bank"). `transport` routes its drivers' outbound calls (tests).

    The store it opens closes with the app's lifespan; a `store` passed in is the caller's to close."""
    settings = settings or Settings()
    validate_each_document_once()
    lifespan = None
    if store is None:
        store = open_store(
            settings.db_path,
            journal_limit=settings.journal_limit,
            busy_timeout=settings.busy_timeout,
            reachable_later=True,  # a worker started while PostgreSQL is out of reach serves -7
        )
        lifespan = _closing(store, role, settings)
    envelopes = _Envelopes(role, settings)
    operations, handlers = _handlers(role, store, settings, transport, envelopes)
    spec, operation_at = _served(role, settings)
    envelopes.served = ", ".join(f"POST {path}" for path in operation_at)
    # ConnectionFaults first: it must hold the server's own `send` to break a connection.
    # Swagger UI's, ours: the served documents list their server (mocks/served_spec.py).
    middlewares = [
        ConnectionFaults,
        *(SwaggerUI if m is SwaggerUIMiddleware else m for m in ConnexionMiddleware.default_middlewares),
    ]
    app = connexion.AsyncApp(__name__, middlewares=middlewares, lifespan=lifespan)
    _add_apis(app, role, settings, spec, operations, envelopes)
    _add_error_handlers(app, envelopes)
    _add_layers(app, role, settings, store, envelopes, operation_at)
    if not settings.validate_responses:  # else connexion answers the API too, and checks its answers
        _add_fast_path(app, spec, operation_at, handlers, envelopes)
    return app


def _handlers(
    role: Role,
    store: Storage,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    envelopes: _Envelopes,
) -> tuple[dict[str, Any], dict[str, Handler]]:
    """The operations' handlers for connexion (operationId -> handler: the control API's and the
    role's API), and the API's handlers on the fast path."""
    control = ControlHandlers(role, store, settings, transport)
    operations: dict[str, Any] = {
        "health": control.health,
        "reset": control.reset,
        "journal": control.journal,
        "seed_token": control.seed_token,
        "start_withdrawal": control.start_withdrawal,
        "start_redemption": control.start_redemption,
        "start_reversal": control.start_reversal,
        "provider_state": control.provider_state,
        "add_fault": control.add_fault,
        "list_faults": control.list_faults,
        "delete_fault": control.delete_fault,
        "get_modes": control.get_modes,
        "set_modes": control.set_modes,
    }
    faults = Faults(
        role,
        store,
        envelopes.for_fault,
        Modes(settings.offline, settings.max_concurrency, settings.magic_values),
        hang_seconds=settings.hang_seconds,
    )
    control.faults = faults

    handlers: dict[str, Handler] = {}  # operationId -> its handler on the fast path

    def api(operation: str, process: Callable[[dict[str, str]], Awaitable[Answer]]) -> Any:
        async def answer(body: dict[str, Any], scope: Scope) -> dict[str, str]:
            return await faults.run(operation, body, scope, lambda: process(body))

        async def handler(body: dict[str, str]) -> tuple[dict[str, str], int]:
            # The call's scope as connexion's ContextMiddleware keeps it: the proxy's object, read
            # once (connexion's `request` proxy would build a request object a call).
            return await answer(body, call_scope._get_current_object()), 200

        handlers[operation] = answer
        return handler

    if role == "ipg":
        ipg = IpgRules(store, settings)
        operations["token_redemption"] = api("token_redemption", ipg.redeem)
        operations["token_reversal"] = api("token_reversal", ipg.reverse)
    else:
        operations["token_generation"] = api("token_generation", BankRules(store, settings).generate)
    return operations, handlers


def _served(role: Role, settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """The role's document with each operation at its configured path (the document leaves URLs
    "TBD"), and the operationId served at each path."""
    spec = load_spec(f"{role}.yaml")
    operation_at: dict[str, str] = {}  # path -> operationId
    paths: dict[str, Any] = {}
    for _path, item in spec["paths"].items():
        operation_id = item["post"]["operationId"]
        configured = settings.paths[operation_id]
        paths[configured] = item
        operation_at[configured] = operation_id
    spec["paths"] = paths
    return spec, operation_at


def _add_apis(
    app: connexion.AsyncApp,
    role: Role,
    settings: Settings,
    spec: dict[str, Any],
    operations: dict[str, Any],
    envelopes: _Envelopes,
) -> None:
    """The role's API and, under CONTROL_PREFIX, the control API (with its token when one is set)."""
    resolver = Resolver(function_resolver=operations.__getitem__)
    common = {
        "resolver": resolver,
        "strict_validation": True,
        "validate_responses": True,
        "validator_map": VALIDATORS,
    }
    app.add_api(spec, name=role, **common)
    control_document, control_security = secured(load_spec("control.yaml", role=role), settings.control_token)
    app.add_api(
        control_document, base_path=CONTROL_PREFIX, name="control", security_map=control_security, **common
    )
    envelopes.allowed = [
        *_allow_headers(spec["paths"]),
        *_allow_headers(control_document["paths"], CONTROL_PREFIX),
    ]


def _add_error_handlers(app: connexion.AsyncApp, envelopes: _Envelopes) -> None:
    """Refusals, faults of the store and our own failures, answered in the API's envelope."""
    app.add_error_handler(ProblemException, envelopes.problem)
    app.add_error_handler(404, envelopes.not_found)
    app.add_error_handler(405, envelopes.method_not_allowed)
    app.add_error_handler(UnicodeDecodeError, envelopes.not_utf8)
    app.add_error_handler(StoreBusy, envelopes.store_busy)
    app.add_error_handler(Exception, envelopes.internal)


def _add_layers(
    app: connexion.AsyncApp,
    role: Role,
    settings: Settings,
    store: Storage,
    envelopes: _Envelopes,
    operation_at: dict[str, str],
) -> None:
    """Our middlewares between connexion's ServerErrorMiddleware and ExceptionMiddleware, in this
    order: the journal sees every answer, the body's refusals included (each is inserted just before
    ExceptionMiddleware, so the first added is the outer). The access log, outside them, only when
    asked for: off, it costs no layer."""
    secrets = Secrets.of_banks(settings.banks, settings.bank_password)
    if settings.access_log:
        position = MiddlewarePosition.BEFORE_EXCEPTION
        app.add_middleware(AccessLog, position=position, role=role, secrets=secrets)
    app.add_middleware(
        RequestJournal,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        role=role,
        store=store,
        error_answer=envelopes,
        operations=operation_at,
        busy_answer=envelopes.busy,
        secrets=secrets,
    )
    app.add_middleware(
        RequestBody, position=MiddlewarePosition.BEFORE_EXCEPTION, settings=settings, error_answer=envelopes
    )


def _add_fast_path(
    app: connexion.AsyncApp,
    spec: dict[str, Any],
    operation_at: dict[str, str],
    handlers: dict[str, Handler],
    envelopes: _Envelopes,
) -> None:
    """The API's own path, inside our other layers: each operation's request schema and handler."""
    resolved = resolve_refs(spec)["paths"]
    fast = {
        path: Operation(
            resolved[path]["post"]["requestBody"]["content"]["application/json"]["schema"],
            handlers[operation_id],
        )
        for path, operation_id in operation_at.items()
    }
    app.add_middleware(
        FastPath,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        operations=fast,
        refusal=envelopes.refusal,
        internal=envelopes.internal_error,
    )


def frozen(app: connexion.AsyncApp) -> connexion.AsyncApp:
    """`app`, with what was built so far kept out of the garbage collector's sight (gc.freeze).

    The modules, spec, validators and routes live as long as the worker; without this, the
    collections of the older generations walk them all again and again, pauses that the calls under
    way wait for (benchmarks/README.md has the p99 with and without)."""
    gc.collect()
    gc.freeze()
    return app


def ipg_app() -> connexion.AsyncApp:
    """The iPG mock configured from MPESA_ATM_* variables (uvicorn workers)."""
    return frozen(create_app("ipg", load_settings()))


def bank_app() -> connexion.AsyncApp:
    """The bank mock configured from MPESA_ATM_* variables (uvicorn workers)."""
    return frozen(create_app("bank", load_settings()))
