"""A mock whose bank is known by a password hash keeps answering while a campaign sends it a new wrong
password each call: scrypt runs in a few threads of the worker's, never on its event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mpesa_atm.passwords import hash_password
from tests.fixtures.mocks import DOCUMENT_REDEMPTION

# Distinct wrong passwords sent at once: the 1,000 are about 30 s of scrypt on this project's
# two shared cores; MPESA_ATM_TEST_BURST gives the full figure (docs/reliability.md says what it gave).
BURST = int(os.environ.get("MPESA_ATM_TEST_BURST", "300"))
IN_FLIGHT = 50  # a campaign's concurrent calls
HEALTH_BUDGET = 0.5  # seconds


async def _burst(url: str) -> list[str]:
    """Sends BURST redemptions, each with a password never sent before; their response codes."""
    limits = httpx.Limits(max_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:

        async def one(i: int) -> str:
            body = {**DOCUMENT_REDEMPTION, "input_Password": f"wrong-{i}"}
            answer = await client.post("/token-redemption", json=body)
            return str(answer.json()["output_ResponseCode"])

        return await asyncio.gather(*(one(i) for i in range(BURST)))


def _health_while(url: str, burst_over: threading.Event) -> list[float]:
    """Seconds each /_harness/health took, asked one after another until the burst is over (in a
    thread of its own: the burst's client keeps the test's event loop busy)."""
    took = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while not burst_over.is_set():
            started = time.perf_counter()
            assert client.get("/_harness/health").status_code == 200
            took.append(time.perf_counter() - started)
            burst_over.wait(0.05)  # a poll's pace
    return took


@pytest.mark.network
def test_distinct_wrong_passwords_leave_health_answering_at_once(serve, tmp_path: Path):
    config = tmp_path / "mpesa-atm.toml"
    config.write_text(
        "[[ipg.banks]]\n"
        'username = "fnb"\n'
        f'password_hash = "{hash_password("the-right-one")}"\n'
        'shortcodes = ["49272"]\n',
        encoding="utf-8",
    )
    url = serve("--config", str(config), "--workers", "1", role="ipg").ipg_url

    burst_over = threading.Event()
    with ThreadPoolExecutor(1) as poller:
        health = poller.submit(_health_while, url, burst_over)
        started = time.perf_counter()
        try:
            codes = asyncio.run(_burst(url))
        finally:
            burst_over.set()
        seconds = time.perf_counter() - started
        took = health.result()

    assert set(codes) == {"-4"}, "each wrong password is Authentication Failed"
    print(f"{BURST} wrong passwords in {seconds:.1f} s; health: {len(took)} asks, slowest {max(took):.3f} s")
    assert len(took) >= 5, "the burst ended before health was asked: nothing measured"
    assert max(took) < HEALTH_BUDGET, f"/_harness/health took {max(took):.2f} s during the burst"
