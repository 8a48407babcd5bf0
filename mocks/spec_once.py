"""Each OpenAPI document validated against the OpenAPI schema once a process, not at every use.

connexion 3 validates a document against the OpenAPI 3.0 schema (jsonschema, over the whole meta-schema)
each time it makes a `Specification` of it: in each `add_api`, and again in each middleware that clones
it for a base path. A mock builds two APIs, and a worker, a test or a fuzz campaign of the mocks builds
its apps from the same few documents: that validation was most of the time an app took to build
(both mocks took 0.36-0.43 s to build here, 0.09-0.16 s without it). The documents are ours and
checked where they are written (`tox -e spec`, tests/test_openapi.py); a document already validated
in this process, byte for byte the same once connexion set its defaults, is not validated again.
Anything else (another document, a changed one) is validated as connexion would.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from connexion.spec import OpenAPISpecification

__all__ = ["validate_each_document_once"]

_lock = threading.Lock()
_validated: set[str] = set()
_installed = False


def _key(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()


def validate_each_document_once() -> None:
    """Makes connexion's OpenAPISpecification validate a given document once a process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        validate = OpenAPISpecification._validate_spec.__func__

        def once(cls: type[OpenAPISpecification], spec: Any) -> None:
            key = _key(spec)
            if key in _validated:
                return
            validate(cls, spec)  # raises InvalidSpecification for a document that breaks the schema
            _validated.add(key)

        OpenAPISpecification._validate_spec = classmethod(once)
        _installed = True
