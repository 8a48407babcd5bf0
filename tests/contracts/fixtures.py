"""What verification tests serve besides `mpesa-atm serve`: an ASGI app (a mock with other settings,
or with one rule altered, or a fake Pact Broker) served by uvicorn in a thread, on a loopback socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mpesa_atm.operations import CONTROL_PREFIX


class AlteredAnswer:
    """Wraps a mock so that one of its rules answers another code: on `path`, an answer with
    output_ResponseCode `was` goes out as `becomes` (everything else untouched)."""

    def __init__(self, app: ASGIApp, *, path: str, was: str, becomes: str) -> None:
        self.app = app
        self.path = path
        self.was = was
        self.becomes = becomes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def altering_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = json.loads(b"".join(chunks))
            if body.get("output_ResponseCode") == self.was:
                body["output_ResponseCode"] = self.becomes
            raw = json.dumps(body).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(raw)).encode())]})
            await send({"type": "http.response.body", "body": raw})

        await self.app(scope, receive, altering_send)


class FakeBroker:
    """The part of a Pact Broker's HAL API that Pact's verifier uses to fetch the pacts for a provider
    and publish the results (and the provider's branch); it records every request."""

    def __init__(self, pact: dict[str, Any], *, results_status: int = 201) -> None:
        self.pact = pact
        self.results_status = results_status
        self.base = ""  # set once served
        self.requests: list[tuple[str, str, dict[str, str], str]] = []  # method, path, headers, body
        provider = pact["provider"]["name"]
        self.app = Starlette(
            routes=[
                Route("/", self._index),
                Route("/for-verification/{provider}", self._for_verification, methods=["GET", "POST"]),
                Route("/pact", self._pact),
                Route("/pact/results", self._results, methods=["POST"]),
                Route(f"/pacticipants/{provider}", self._provider),
                Route(
                    f"/pacticipants/{provider}/branches/{{branch}}/versions/{{version}}",
                    self._ok,
                    methods=["PUT"],
                ),
            ]
        )

    def requested(self, method: str, path: str) -> list[tuple[dict[str, str], str]]:
        return [(headers, body) for m, p, headers, body in self.requests if (m, p) == (method, path)]

    async def _hal(self, request: Request, document: dict[str, Any], status: int = 200) -> JSONResponse:
        body = (await request.body()).decode()
        self.requests.append((request.method, request.url.path, dict(request.headers), body))
        return JSONResponse(document, status_code=status, media_type="application/hal+json")

    async def _index(self, request: Request) -> JSONResponse:
        link = {"href": self.base + "/for-verification/{provider}", "templated": True}
        return await self._hal(request, {"_links": {"pb:provider-pacts-for-verification": link}})

    async def _for_verification(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return await self._hal(request, {"_links": {"self": {"href": str(request.url)}}})
        pact = {
            "shortDescription": "latest",
            "verificationProperties": {"pending": False, "notices": [{"text": "fake broker notice"}]},
            "_links": {"self": {"href": self.base + "/pact", "name": "the pact"}},
        }
        return await self._hal(request, {"_embedded": {"pacts": [pact]}})

    async def _pact(self, request: Request) -> JSONResponse:
        links = {
            "pb:publish-verification-results": {"href": self.base + "/pact/results"},
            "pb:provider": {"href": self.base + f"/pacticipants/{self.pact['provider']['name']}"},
        }
        return await self._hal(request, {**self.pact, "_links": links})

    async def _results(self, request: Request) -> JSONResponse:
        return await self._hal(request, {}, self.results_status)

    async def _provider(self, request: Request) -> JSONResponse:
        path = request.url.path + "/branches/{branch}/versions/{version}"
        return await self._hal(
            request, {"_links": {"pb:branch-version": {"href": self.base + path, "templated": True}}}
        )

    async def _ok(self, request: Request) -> JSONResponse:
        return await self._hal(request, {})


class SlowAnswers:
    """Wraps a mock so that its API answers `delay` seconds late (its control API at once): a
    verification long enough to watch and to interrupt."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIX):
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)
