"""How fast a fuzz campaign runs: cases per second against both mocks in process (ASGI) and over loopback.

    python benchmarks/fuzz_speed.py                      # 100 examples per operation, both modes
    python benchmarks/fuzz_speed.py --mode in-process --max-examples 50 --seed 7

A campaign is the CLI's: per operation realistic, schema-valid and schema-invalid cases (with the
replays and probes the checks send), then the iPG's token lifecycles. "cases" counts what the
campaign generated; "requests" everything it sent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import mpesa_atm._warnings  # noqa: F401  (before connexion is imported by the mocks)
from mpesa_atm.fuzz import CampaignResult, Credentials, Target, run_campaign
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings

CREDENTIALS = Credentials(username="fnb", password="P@ssword123", shortcode="49272")


def _row(mode: str, result: CampaignResult) -> str:
    return (
        f"{mode:<11} {result.role:<5} {result.cases:>6} {result.requests:>9} {result.duration:>8.2f} "
        f"{result.cases / result.duration:>8.1f} {result.requests / result.duration:>11.1f} "
        f"{len(result.findings):>9}"
    )


def _campaigns(targets: list[Target], args: argparse.Namespace, mode: str) -> float:
    started = time.perf_counter()
    for target in targets:
        result = run_campaign(target, max_examples=args.max_examples, seed=args.seed, workers=args.workers)
        print(_row(mode, result), flush=True)
    return time.perf_counter() - started


def in_process(args: argparse.Namespace, folder: Path) -> float:
    settings = Settings(db_path=str(folder / "in-process.sqlite3"))
    bank = create_app("bank", settings)
    ipg = create_app("ipg", settings, transport=httpx.ASGITransport(app=bank))
    targets = [Target("bank", app=bank), Target("ipg", app=ipg, credentials=CREDENTIALS)]
    return _campaigns(targets, args, "in-process")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def loopback(args: argparse.Namespace, folder: Path) -> float:
    ipg_port, bank_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    command = [sys.executable, "-m", "mpesa_atm", "serve", "--db", str(folder / "loopback.sqlite3")]
    command += ["--ipg-port", str(ipg_port), "--bank-port", str(bank_port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        urls = {"ipg": f"http://127.0.0.1:{ipg_port}", "bank": f"http://127.0.0.1:{bank_port}"}
        deadline = time.monotonic() + 30
        for url in urls.values():
            while True:
                try:
                    if httpx.get(f"{url}/_harness/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the mocks did not start on {url}")
                time.sleep(0.1)
        targets = [Target("bank", url=urls["bank"]), Target("ipg", url=urls["ipg"], credentials=CREDENTIALS)]
        return _campaigns(targets, args, "loopback")
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("in-process", "loopback", "both"), default="both")
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.max_examples} examples per operation, seed {args.seed}, {args.workers} worker(s)")
    print(
        f"{'mode':<11} {'role':<5} {'cases':>6} {'requests':>9} {'seconds':>8} {'cases/s':>8} "
        f"{'requests/s':>11} {'findings':>9}"
    )
    with tempfile.TemporaryDirectory() as folder:
        if args.mode in ("in-process", "both"):
            total = in_process(args, Path(folder))
            print(f"in-process: all three operations and the token lifecycles in {total:.2f} s", flush=True)
        if args.mode in ("loopback", "both"):
            total = loopback(args, Path(folder))
            print(f"loopback: all three operations and the token lifecycles in {total:.2f} s", flush=True)


if __name__ == "__main__":
    main()
