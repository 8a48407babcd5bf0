"""Every answer 0 is committed before it is sent: SIGKILL `mpesa-atm serve --workers 2` in the middle
of a load, restart it on the same file, and every acknowledged token, redemption and reversal is still
there (its replay is a duplicate carrying the first reference)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.helpers import burst, kill_tree

pytestmark = pytest.mark.network

TOKENS = 150  # seeded tokens for each of redemption and reversal
ACKS_BEFORE_KILL = 200
CALLERS = 16

MSISDN = "243843330333"
USERNAME, PASSWORD, SHORTCODE = "fnb", "P@ssword123", "49272"


@dataclass(frozen=True)
class Call:
    path: str
    body: dict[str, str]


def generation(i: int) -> Call:
    body = {"input_CustomerMSISDN": MSISDN, "input_Amount": "150", "input_Currency": "USD"}
    return Call("/token-generation", {**body, "input_TransactionID": f"DUR{i}"})


def token(kind: str, i: int) -> dict[str, str]:
    return {
        "bank_transaction_ref": f"{kind}-ref-{i}",
        "transaction_id": f"{kind.upper()}{i}",
        "msisdn": MSISDN,
        "amount": "200",
        "currency": "CDF",
    }


def spend(kind: str, i: int) -> Call:
    body = {
        "input_Username": USERNAME,
        "input_Password": PASSWORD,
        "input_CustomerMSISDN": MSISDN,
        "input_Currency": "CDF",
        "input_BankShortcode": SHORTCODE,
        "input_Amount": "200",
        "input_ThirdPartyReference": f"{kind}-atm-{i}",
        "input_BankTransactionRef": f"{kind}-ref-{i}",
    }
    if kind == "rev":
        return Call("/token-reversal", {**body, "input_TransactionID": f"REV{i}"})
    return Call("/token-redemption", body)


def calls() -> list[Call]:
    """Generations, redemptions and reversals, interleaved."""
    mixed = zip(
        (generation(i) for i in range(TOKENS)),
        (spend("red", i) for i in range(TOKENS)),
        (spend("rev", i) for i in range(TOKENS)),
        strict=True,
    )
    return list(itertools.chain.from_iterable(mixed))


@dataclass
class Load:
    acknowledged: list[tuple[Call, dict[str, Any]]]
    cut_off: int  # calls sent before the kill and never answered: in flight when the server died
    killed: list[int]


async def load_then_kill(urls: dict[str, str], served: Any) -> Load:
    pending = iter(calls())
    acknowledged: list[tuple[Call, dict[str, Any]]] = []
    cut_off = 0
    enough = asyncio.Event()
    killed_at = float("inf")

    async def caller(client: httpx.AsyncClient) -> None:
        nonlocal cut_off
        for call in pending:
            base = urls["bank"] if call.path == "/token-generation" else urls["ipg"]
            sent_at = time.monotonic()
            try:
                response = await client.post(base + call.path, json=call.body)
            except httpx.TransportError:
                cut_off += sent_at < killed_at
                return
            answer = response.json()
            assert answer["output_ResponseCode"] == "0", (call, answer)
            acknowledged.append((call, answer))
            if len(acknowledged) >= ACKS_BEFORE_KILL:
                enough.set()

    async def killer() -> list[int]:
        nonlocal killed_at
        await asyncio.wait_for(enough.wait(), 30)
        killed_at = time.monotonic()
        return kill_tree(served)  # synchronous: nothing else runs until every process is dead

    limits = httpx.Limits(max_connections=CALLERS)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        killed, *_ = await asyncio.gather(killer(), *(caller(client) for _ in range(CALLERS)))
    return Load(acknowledged, cut_off, killed)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers to kill in /proc")
def test_acknowledged_calls_survive_sigkill_mid_load(serve, tmp_path):
    db = tmp_path / "durable.sqlite3"
    served = serve("--workers", "2", db_path=db)
    for kind in ("red", "rev"):
        seeded = asyncio.run(
            burst(f"{served.ipg_url}/_harness/tokens", [token(kind, i) for i in range(TOKENS)])
        )
        assert {r.status_code for r in seeded} == {201}

    load = asyncio.run(load_then_kill(served.urls, served))
    assert len(load.killed) >= 7  # serve, 2 role supervisors, 4 workers (and their helpers)
    assert load.cut_off > 0, "the kill came between calls, not in the middle of the load"
    assert len(load.acknowledged) >= ACKS_BEFORE_KILL
    assert {call.path for call, _ in load.acknowledged} == {
        "/token-generation",
        "/token-redemption",
        "/token-reversal",
    }

    again = serve("--workers", "2", db_path=db)
    replays = asyncio.run(asyncio.wait_for(_replay(again.urls, [call for call, _ in load.acknowledged]), 60))
    lost = []
    for (call, first), replay in zip(load.acknowledged, replays, strict=True):
        replay = replay.json()
        if call.path == "/token-generation":
            same = ("output_BankTransactionRef", "output_BankDateTime")
        else:
            same = ("output_InsightReference", "output_ThirdPartyReference")
        if replay["output_ResponseCode"] != "-3" or any(replay[f] != first[f] for f in same):
            lost.append((call, first, replay))
    assert not lost, f"{len(lost)} of {len(load.acknowledged)} acknowledged calls were lost: {lost[:3]}"


async def _replay(urls: dict[str, str], calls: list[Call]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CALLERS)
    gate = asyncio.Semaphore(CALLERS)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def one(call: Call) -> httpx.Response:
            base = urls["bank"] if call.path == "/token-generation" else urls["ipg"]
            async with gate:
                return await client.post(base + call.path, json=call.body)

        return list(await asyncio.gather(*(one(call) for call in calls)))
