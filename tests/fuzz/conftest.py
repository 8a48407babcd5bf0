"""Fixtures of the fuzzing tests: the document's bank credentials, and any ASGI app served on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from mpesa_atm.fuzz import Credentials
from tests.fixtures.servers import free_port

DOCUMENT_CREDENTIALS = Credentials(username="fnb", password="P@ssword123", shortcode="49272")


@pytest.fixture
def credentials() -> Credentials:
    return DOCUMENT_CREDENTIALS


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], str]]:
    """Serves an ASGI app (e.g. a broken partner) with uvicorn in a thread; returns its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any) -> str:
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        servers.append((server, thread))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the app did not start on {url}")
            time.sleep(0.02)
        httpx.get(f"{url}/_harness/health", timeout=5)  # the first call warms the app up
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
