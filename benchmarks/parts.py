"""What each part of the bank mock costs under load: CPU per call with one part taken out at a time.

    python benchmarks/parts.py                      # every part, 2 workers
    python benchmarks/parts.py --workers 1 journal rules

Each point serves the bank mock under uvicorn with the part patched out of the package in the
worker processes (a `without` factory below, never an option of the mocks), puts it under the same
wrk load as `load.py` (Token Generation, 10 connections), and prints requests/s, the CPU cores the
server used and the CPU per call. The difference to `mock` is the part's cost; `none` takes every
part out and should come close to `ceiling` (`fast_path` is the other way round: without it, the
API's calls take connexion's path and cost more).
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpesa_atm.mocks  # noqa: F401
from mpesa_atm.codes import ResponseCode, bank_answer
from mpesa_atm.mocks import bank, connection_faults, fastpath, faults, request_body, request_journal
from mpesa_atm.mocks.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load

VARIABLE = "MPESA_ATM_BENCH_WITHOUT"
_CONSTANT = bank_answer(
    ResponseCode.SUCCESS,
    bank_transaction_ref="12345678123412341234123456789abc",
    bank_date_time="20190611 223210",
)


def _without_faults() -> None:
    async def run(self: Any, operation: str, body: Any, scope: Any, process: Any) -> Any:
        answer = process()
        return await answer if inspect.isawaitable(answer) else answer

    faults.Faults.run = run  # type: ignore[method-assign]


def _without_journal() -> None:
    async def journal(self: Any, *args: Any) -> None:
        return None

    request_journal.RequestJournal._journal = journal  # type: ignore[method-assign]


def _without_request_layers() -> None:
    """RequestJournal, and of RequestBody all but the read of the body (which the fast path needs)."""

    async def passed_on(self: Any, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def read_only(self: Any, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        scope[request_body.BODY_KEY] = message.get("body", b"")
        await self.app(scope, request_body.replaying(scope[request_body.BODY_KEY], receive), send)

    request_journal.RequestJournal.__call__ = passed_on  # type: ignore[method-assign]
    request_body.RequestBody.__call__ = read_only  # type: ignore[method-assign]


def _without_fast_path() -> None:
    """The API's calls through connexion (validation, routing, handler), as before the fast path."""

    async def passed_on(self: Any, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    fastpath.FastPath.__call__ = passed_on  # type: ignore[method-assign]


def _without_rules() -> None:
    bank.BankRules.generate = lambda self, request: _CONSTANT  # type: ignore[method-assign]


def _without_connection_faults() -> None:
    connection_faults.ConnectionFaults.__call__ = lambda self, scope, receive, send: self.app(
        scope, receive, send
    )  # type: ignore[method-assign]


PARTS: dict[str, Callable[[], None]] = {
    "faults": _without_faults,
    "journal": _without_journal,
    "request_layers": _without_request_layers,
    "rules": _without_rules,
    "connection_faults": _without_connection_faults,
    "fast_path": _without_fast_path,
}


def bank_app() -> Any:
    """uvicorn factory: the bank mock without the parts named in MPESA_ATM_BENCH_WITHOUT."""
    names = [name for name in os.environ.get(VARIABLE, "").split(",") if name]
    for name in [p for p in PARTS if p != "fast_path"] if "none" in names else names:
        PARTS[name]()
    from mpesa_atm.mocks.app import bank_app as real

    return real()


def bank_ceiling() -> Any:
    from ceiling import bank_ceiling as ceiling

    return ceiling()


LUA = """
local counter = 0
local prefix = tostring(math.random(1, 1e9))
function request()
  counter = counter + 1
  local body = '{"input_CustomerMSISDN":"243843330333","input_Amount":"200","input_Currency":"CDF",'
    .. '"input_TransactionID":"' .. prefix .. counter .. '"}'
  return wrk.format("POST", "/token-generation", {["Content-Type"] = "application/json"}, body)
end
"""


def measure(wrk: str, point: str, workers: int, seconds: float, folder: Path) -> tuple[float, float]:
    """(requests/s, server cores) of one run."""
    port = load.free_port()
    db = folder / f"{point}-{time.monotonic_ns()}.sqlite3"
    Store(str(db)).close()  # the schema once, as `mpesa-atm serve` does before its workers
    env = dict(os.environ, MPESA_ATM_DB=str(db))
    env[VARIABLE] = "" if point in ("mock", "ceiling") else point
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH")])
    )
    factory = "parts:bank_ceiling" if point == "ceiling" else "parts:bank_app"
    command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port)]
    command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env=env, start_new_session=True)
    script = folder / "parts.lua"
    script.write_text(LUA)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{point}: the server did not start") from None
                time.sleep(0.1)
        subprocess.run([wrk, "-t1", "-c10", "-d2s", "-s", str(script), url], capture_output=True, check=True)
        pids = load.process_tree(server.pid)
        before = load.cpu_seconds(pids)
        out = subprocess.run(
            [wrk, "-t1", "-c10", f"-d{seconds:g}s", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cores = (load.cpu_seconds(pids) - before) / seconds
        rate = float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])
        if "Non-2xx" in out:  # a part taken out broke the mock: its rate would measure errors
            raise SystemExit(f"{point}: answers other than 2xx\n{out}")
        return rate, cores
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("parts", nargs="*", help=f"parts to take out, one a point: {', '.join(PARTS)}, none")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="runs a point; the fastest is shown")
    args = parser.parse_args(argv)
    wrk = load.ensure_wrk()
    points = ["ceiling", "mock", *(args.parts or [*PARTS, "none"])]
    print(f"bank mock, Token Generation, {args.workers} worker(s), wrk -t1 -c10, {args.duration:g} s a run")
    print(f"{'without':18} {'req/s':>7} {'cores':>6} {'us/call':>8}  {'part costs':>10}")
    mock_cost = None
    with tempfile.TemporaryDirectory() as tmp:
        for point in points:
            runs = [measure(wrk, point, args.workers, args.duration, Path(tmp)) for _ in range(args.repeat)]
            rate, cores = max(runs)
            cost = cores / rate * 1e6
            if point == "mock":
                mock_cost = cost
            part = f"{mock_cost - cost:8.0f} us" if mock_cost is not None and point != "mock" else ""
            print(f"{point:18} {rate:7.0f} {cores:6.2f} {cost:8.0f}  {part:>10}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
