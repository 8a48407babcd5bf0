"""Swagger UI and the served documents (`/openapi.json`, `/openapi.yaml`): connexion's own, with the
API's server listed where Swagger UI can show it and "Try it out" can send to it.

connexion 3 rewrites each served document's `servers` to the API's base path under the request's
root path, without its trailing slash (connexion's SwaggerUIAPI._spec_for_prefix), so an API at the
root is served with `servers: [{"url": ""}]`: Swagger UI lists one server with no name. It is served
here as "/", which a browser resolves against the page, whatever host, port or scheme (a proxy in
front of the mock) it was reached by. A document under a path (the control API's, a proxy's root
path) keeps connexion's."""

from __future__ import annotations

from typing import Any

from connexion.middleware.swagger_ui import SwaggerUIAPI, SwaggerUIMiddleware
from starlette.requests import Request

__all__ = ["SwaggerUI"]


class _ServedSpec(SwaggerUIAPI):
    def _spec_for_prefix(self, request: Request) -> dict[str, Any]:
        spec: dict[str, Any] = super()._spec_for_prefix(request)
        if [server.get("url") for server in spec.get("servers", [])] == [""]:
            return {**spec, "servers": [{"url": "/"}]}
        return spec


class SwaggerUI(SwaggerUIMiddleware):
    """connexion's SwaggerUIMiddleware, serving the documents through _ServedSpec."""

    def add_api(
        self, specification: Any, base_path: str | None = None, arguments: Any = None, **kwargs: Any
    ) -> None:
        # As SwaggerUIMiddleware.add_api (connexion 3.x), with the API class ours.
        api = _ServedSpec(
            specification, base_path=base_path, arguments=arguments, default=self.default_fn, **kwargs
        )
        self.router.mount(api.base_path, app=api.router)
