"""The control API's token: control.yaml's bearer scheme, which connexion's SecurityMiddleware enforces.

control.yaml requires the `controlToken` bearer scheme of every control operation but /health, so
Swagger UI (`/_harness/ui/`) has an Authorize button. connexion checks it with `ControlToken`, given
to the control API in its `security_map`: the token compared in constant time with the mock's. A
refusal is connexion's 401, which the app's error handlers answer in the control API's format with
`TOKEN_NEEDED`.

Without a control token the control API is open: the document is served without its `security`
requirement, so connexion checks nothing and the served document says so. (A check that let every
call pass would still refuse a call without an Authorization header: connexion answers 401 when
no credentials of a required scheme are sent.)
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from connexion.security import BearerSecurityHandler

__all__ = ["TOKEN_NEEDED", "ControlToken", "secured"]

TOKEN_NEEDED = "this mock's control API needs 'Authorization: Bearer <control token>'"


class ControlToken(BearerSecurityHandler):
    """connexion's bearer handler, whose info function compares the token with `token`."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: list[str]) -> Callable[..., Any]:
        # The info function is ours, not one named by x-bearerInfoFunc (which would be a module's
        # function, with no way to know this app's token). _get_verify_func is connexion's
        # documented hook for custom handlers.
        return self._get_verify_func(self._check)

    def _check(self, token: str) -> dict[str, str] | None:
        # Headers reach connexion decoded as latin-1: back to the bytes that were sent.
        if hmac.compare_digest(token.encode("latin-1"), self._expected):
            return {"sub": "control"}
        return None  # connexion answers 401


def secured(document: dict[str, Any], token: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The control API's document as served with `token` (None: open), and its `security_map`."""
    if not token:
        return {key: value for key, value in document.items() if key != "security"}, {}
    return document, {"bearer": functools.partial(ControlToken, token)}
