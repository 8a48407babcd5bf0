"""A mock whose bank is known by a password hash keeps answering while a campaign sends it a new wrong
password each call: scrypt runs in a few threads of the worker's, never on its event loop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mpesa_atm.passwords import hash_password
from tests.fixtures.mocks import DOCUMENT_REDEMPTION

# Distinct wrong passwords sent at once: the 1,000 took 96 s on this project's two shared
# cores; MPESA_ATM_TEST_BURST gives the full figure (docs/reliability.md says what it gave). 100 hold
# scrypt on the loop long enough to fail (health took 3.3 s in one of 7 asks, planted once and removed).
BURST = int(os.environ.get("MPESA_ATM_TEST_BURST", "100"))
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


# Asks /_harness/health one call after another until the file argv[2] exists, then prints the seconds
# each took. A process of its own: in the test's, the burst's client would hold the GIL and the
# poller's wait would be the test's own.
POLLER = """
import json, os, sys, time
import httpx
took = []
with httpx.Client(base_url=sys.argv[1], timeout=30) as client:
    while not os.path.exists(sys.argv[2]):
        started = time.perf_counter()
        assert client.get("/_harness/health").status_code == 200
        took.append(time.perf_counter() - started)
        time.sleep(0.05)  # a poll's pace
print(json.dumps(took))
"""


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

    over = tmp_path / "burst-over"
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, url, str(over)], stdout=subprocess.PIPE, text=True
    )
    started = time.perf_counter()
    try:
        codes = asyncio.run(_burst(url))
    finally:
        over.touch()
    seconds = time.perf_counter() - started
    took = sorted(json.loads(poller.communicate(timeout=60)[0]))

    assert set(codes) == {"-4"}, "each wrong password is Authentication Failed"
    median = took[len(took) // 2]
    print(f"{BURST} wrong passwords in {seconds:.1f} s; health: {len(took)} asks, median {median:.3f} s,")
    print(f"slowest {', '.join(f'{t:.3f}' for t in took[-3:])} s")
    assert len(took) >= 5, "the burst ended before health was asked: nothing measured"
    # Nineteen asks in twenty: on a loaded machine (CI runs four test workers on two cores) a process
    # stalls now and then whatever its loop does (0.74 s once in 342 asks, the median 0.007 s); scrypt
    # on the loop would hold most asks behind it.
    slow = took[int(len(took) * 0.95)]
    assert slow < HEALTH_BUDGET, f"/_harness/health took {slow:.2f} s or more in one ask of twenty"
