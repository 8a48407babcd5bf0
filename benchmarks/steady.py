"""Steady-load benchmark (issue 17): both mocks under a constant load for a long time with a short
retention, sampling the store's files, to show that the database and its WAL stop growing once
retention removes as much as the load adds.

Each second it sends RATE unique Token Generations to the bank mock, and to the iPG mock IPG_RATE
tokens recorded through its control API and a Token Redemption of each (so every table of both roles
grows: bank_tokens, ipg_tokens, ipg_transactions). Every SAMPLE seconds it prints the calls answered,
the database's and WAL's sizes and the journal files'. At the end it compares the largest database
and WAL of the last third of the run with those of the middle third.

    python benchmarks/steady.py                                # 60 minutes, retention 3 minutes
    python benchmarks/steady.py --minutes 6 --retention-minutes 1 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

GENERATION = {
    "input_CustomerMSISDN": "243843330333",
    "input_Amount": "200",
    "input_Currency": "CDF",
}
CREDENTIALS = {"input_Username": "fnb", "input_Password": "P@ssword123", "input_BankShortcode": "49272"}
BANNER = re.compile(r"^mpesa-atm \S+: (iPG|bank) mock on (https?://\S+) ", re.MULTILINE)


def start(
    folder: Path, retention_minutes: float, workers: int
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    config = folder / "steady.toml"
    # Retention never shorter than the token window: the window is half of it here.
    config.write_text(
        f"token_ttl_hours = {retention_minutes / 60 / 2!r}\nretention_days = {retention_minutes / 1440!r}\n"
    )
    log = folder / "serve.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpesa_atm",
            "serve",
            "--ipg-port",
            "0",
            "--bank-port",
            "0",
            "--workers",
            str(workers),
            "--db",
            str(folder / "steady.sqlite3"),
            "--config",
            str(config),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = {name.lower(): url for name, url in BANNER.findall(log.read_text())}
        if len(found) == 2:
            return process, found
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"steady.py: the mocks did not start:\n{log.read_text()}")


def sizes(folder: Path) -> tuple[float, float, float]:
    """MB of the database, its WAL and the journal files."""

    def size(path: Path) -> float:
        return path.stat().st_size / 1e6 if path.exists() else 0.0

    db = folder / "steady.sqlite3"
    journal = sum(size(path) for path in folder.glob("steady.sqlite3.journal-*.jsonl"))
    return size(db), size(Path(f"{db}-wal")), journal


async def load(urls: dict[str, str], rates: tuple[int, int], seconds: float, counts: dict[str, int]) -> None:
    """`rates`: Token Generations a second to the bank; tokens recorded and redeemed a second at the
    iPG (its control API, connexion's path, answers a few hundred a second: not the measure here)."""
    limits = httpx.Limits(max_connections=30, max_keepalive_connections=30)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, pool=None), limits=limits) as client:

        def counted(key: str) -> None:
            counts[key] = counts.get(key, 0) + 1

        async def generation() -> None:
            body = {**GENERATION, "input_TransactionID": uuid.uuid4().hex[:20]}
            answer = (await client.post(f"{urls['bank']}/token-generation", json=body)).json()
            counted(answer["output_ResponseCode"])

        async def redemption() -> None:
            reference = uuid.uuid4().hex
            token = {
                "bank_transaction_ref": reference,
                "transaction_id": uuid.uuid4().hex[:20],
                "msisdn": "243843330333",
                "amount": "200",
                "currency": "CDF",
            }
            if (await client.post(f"{urls['ipg']}/_harness/tokens", json=token)).status_code == 201:
                counted("seeded")
            body = {
                **CREDENTIALS,
                "input_CustomerMSISDN": "243843330333",
                "input_Amount": "200",
                "input_Currency": "CDF",
                "input_ThirdPartyReference": uuid.uuid4().hex[:20],
                "input_BankTransactionRef": reference,
            }
            answer = (await client.post(f"{urls['ipg']}/token-redemption", json=body)).json()
            counted(f"redeemed {answer['output_ResponseCode']}")

        # Calls wait here rather than in httpx's pool, whose wait costs the client more CPU the more
        # calls wait (the load generator, not the mocks, became the bottleneck).
        in_flight = asyncio.Semaphore(30)

        async def one(call: Callable[[], Awaitable[None]]) -> None:
            async with in_flight:
                try:
                    await call()
                except httpx.HTTPError as exc:  # counted, not fatal: the sizes are what is measured
                    counted(type(exc).__name__)

        started = time.monotonic()
        tick = 0
        pending: set[asyncio.Task[None]] = set()
        while time.monotonic() - started < seconds:
            for call, rate in ((generation, rates[0]), (redemption, rates[1])):
                for _ in range(rate):
                    task = asyncio.create_task(one(call))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            tick += 1
            await asyncio.sleep(max(0.0, started + tick - time.monotonic()))
        await asyncio.gather(*pending)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--retention-minutes", type=float, default=3)
    parser.add_argument("--rate", type=int, default=200, help="Token Generations a second")
    parser.add_argument("--ipg-rate", type=int, default=20, help="tokens recorded and redeemed a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=float, default=60, help="seconds between samples")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the mocks are stopped too

    with tempfile.TemporaryDirectory(prefix="mpesa-atm-steady-") as name:
        folder = Path(name)
        process, urls = start(folder, args.retention_minutes, args.workers)
        counts: dict[str, int] = {}
        samples: list[tuple[float, float, float, float]] = []
        print(
            f"{args.minutes:g} min, retention {args.retention_minutes:g} min,"
            f" {args.rate} generations and {args.ipg_rate} redemptions a second"
        )
        print("minute  generations  redemptions  database MB  WAL MB  journal MB")

        async def run() -> None:
            loading = asyncio.create_task(load(urls, (args.rate, args.ipg_rate), args.minutes * 60, counts))
            started = time.monotonic()
            while not loading.done():
                await asyncio.wait([loading], timeout=args.sample)
                db, wal, journal = sizes(folder)
                minute = (time.monotonic() - started) / 60
                samples.append((minute, db, wal, journal))
                print(
                    f"{minute:6.1f}  {counts.get('0', 0):11,}  {counts.get('redeemed 0', 0):11,}"
                    f"  {db:11.1f}  {wal:6.1f}  {journal:10.1f}",
                    flush=True,
                )
            await loading

        try:
            asyncio.run(run())
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        print(f"answers: {dict(sorted(counts.items()))}")
        third = len(samples) // 3
        if third:
            middle, last = samples[third : 2 * third], samples[2 * third :]
            for label, column in (("database", 1), ("WAL", 2)):
                before = max(sample[column] for sample in middle)
                after = max(sample[column] for sample in last)
                print(f"{label}: largest {before:.1f} MB in the middle third, {after:.1f} MB in the last")
    return 0


if __name__ == "__main__":
    sys.exit(main())
