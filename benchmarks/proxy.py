"""The proxy's benchmark (issue 25 item 7): what `mpesa-atm proxy bank` adds to a call. In one run, side
by side, wrk (10 connections, a unique valid Token Generation each call, load.py's Lua script) sends
its load straight to the bank mock (`mpesa-atm serve bank`, as load.py starts it), then the same load
through `mpesa-atm proxy bank --upstream <that bank mock>` (its own store in the run's temporary
folder); the order alternates from run to run.

Prints requests/s, p50 and p99 straight and through the proxy and the proxy's added p50 and p99 (the
medians of the runs), whether every call through the proxy was answered 0 (counted by wrk's Lua
script from the answers the client got), and whether the proxy reported no failure: after each run it
is stopped with SIGINT, and its exit code (0 expected) and summary line are read.

    python benchmarks/proxy.py                        # 3 runs of 10 s a side
    python benchmarks/proxy.py --check                # exit 1 unless the proxy adds <= 2 ms p50, <= 5 ms p99
    python benchmarks/proxy.py --duration 2 --repeat 1  # does it work (figures meaningless)
    python benchmarks/proxy.py --rate 500             # paced: 500 calls a second in all, both sides

By default wrk sends each connection's next call as soon as the last is answered (the issue's
measure): the side that answers slower is also loaded less, and with 10 connections the added
latency is mostly the proxy's time a call times the calls waiting. `--rate N` paces the same load on
both sides (each connection waits 1000 * connections / N ms between its calls: wrk's delay()): what
the proxy adds to a call at a load both sides carry. --check holds the issue's measure only.

wrk is the Debian/Ubuntu package `wrk`; run as root, the script installs it when it is missing (as
load.py does, whose helpers it imports).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from load import (
    LUA,
    OPERATIONS,
    WARM_UP_S,
    cpu_seconds,
    ensure_wrk,
    free_port,
    machine_busy_seconds,
    process_tree,
    resource_children_seconds,
    run_wrk,
    server,
)

HERE = Path(__file__).resolve().parent
OPERATION = "token_generation"  # the bank's one operation, which the proxy of the bank forwards
# The target for the proxy at 10 connections on the reference machine (what --check holds).
GOALS = {"added_p50_ms": 2.0, "added_p99_ms": 5.0}
# One worker of the bank mock, whatever the proxy's (--proxy-workers): with more, uvicorn's workers may
# split wrk's connections unevenly (load.py measures such a point again; the two sides would differ).
WORKERS = 1
STOP_S = 60  # for the proxy to finish its calls and its verdict after SIGINT, then it is killed
SUMMARY = re.compile(
    r"^mpesa-atm proxy bank: (?P<verdict>[A-Z ]+?)(?: \(.*?\))?: .*?(?P<exchanges>\d+) exchanges? in "
)

# Appended to load.py's script: each answer the client got is counted in the thread's Lua state
# (answered 0, and carrying the proxy's violations header), and load.py's `done` line gets the two
# counts as fields of its JSON (wrk runs `done` in the main state, which reads the threads' counts).
COUNTING = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
zeros, flagged = 0, 0
function response(status, headers, body)
  if status == 200 and string.find(body, '"output_ResponseCode":%s*"0"') then zeros = zeros + 1 end
  for name, _ in pairs(headers) do
    if string.lower(name) == "x-mpesa-atm-violations" then flagged = flagged + 1 end
  end
end
local summarise = done
function done(summary, latency, requests)
  local z, f = 0, 0
  for _, thread in ipairs(threads) do z = z + thread:get("zeros"); f = f + thread:get("flagged") end
  local write = io.write
  io.write = function(line)
    write((string.gsub(line, "}\n$", string.format(',"answered_0":%d,"flagged":%d}\n', z, f))))
  end
  summarise(summary, latency, requests)
  io.write = write
end
"""


@dataclass
class Side:
    """One side of a run (straight to the bank mock, or through the proxy), measured after its warm-up."""

    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # wrk's connect, read, write and timeout errors
    non_2xx: int
    answered_0: int  # answers with HTTP 200 and output_ResponseCode "0", as the client got them
    flagged: int  # answers carrying X-Mpesa-Atm-Violations (the proxy found something)
    bank_cores: float  # CPU the bank mock used, in cores
    proxy_cores: float  # CPU the proxy used (idle while the straight side runs)
    wrk_cores: float
    other_cores: float  # CPU everything else on the machine used meanwhile

    @property
    def all_answered_0(self) -> bool:
        return self.errors == 0 and self.non_2xx == 0 and self.answered_0 == self.requests > 0


@dataclass
class Run:
    """Both sides of one run, on the same bank mock, and how the proxy ended after SIGINT."""

    straight: Side
    proxied: Side
    proxy_first: bool
    proxy_exit: int | None  # None: it did not stop within STOP_S of SIGINT and was killed
    proxy_summary: str  # its last line, the verdict
    proxy_exchanges: int | None  # as its summary counts them (warm-up included)

    @property
    def added_p50_ms(self) -> float:
        return self.proxied.p50_ms - self.straight.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.proxied.p99_ms - self.straight.p99_ms

    @property
    def proxy_passed(self) -> bool:
        """Exit 0 after SIGINT, a PASSED summary, and no answer with the violations header."""
        return (
            self.proxy_exit == 0
            and self.proxy_summary.startswith("mpesa-atm proxy bank: PASSED")
            and self.proxied.flagged == 0
        )


@dataclass
class Proxy:
    """A running proxy's URL and, once it is stopped, how it ended."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    exit_code: int | None = None
    summary: str = ""
    exchanges: int | None = None


@contextlib.contextmanager
def proxy(upstream: str, folder: Path, workers: int = 1) -> Iterator[Proxy]:
    """`mpesa-atm proxy bank --upstream <upstream>` on a free loopback port, its store and its log (one
    line per exchange, then the verdict) in `folder`; stopped with SIGINT at the end, as CI stops it."""
    port = free_port()
    log = folder / "proxy.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    command = [sys.executable, "-m", "mpesa_atm", "proxy", "bank", "--upstream", upstream]
    command += ["--port", str(port), "--db", str(folder / "proxy.sqlite3"), "--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        running = Proxy(f"http://127.0.0.1:{port}", process, log)
        try:
            listening(process, port, log)
            yield running
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                running.exit_code = process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    lines = log.read_text(errors="replace").splitlines()
    running.summary = next((line for line in reversed(lines) if SUMMARY.match(line)), "(no summary line)")
    found = SUMMARY.match(running.summary)
    running.exchanges = int(found["exchanges"]) if found else None


def listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the process accepts connections on `port` (it binds before it builds its app)."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited ({process.returncode}): {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not listen on {port} in 60 s") from None
            time.sleep(0.1)


def measure_side(
    wrk: str, url: str, script: Path, seconds: float, connections: int, bank: int, proxy_pid: int
) -> Side:
    """WARM_UP_S of the load, then `seconds` of it measured, on `url`; the CPU of the bank mock's and
    the proxy's processes meanwhile, and of everything else on the machine."""
    run_wrk(wrk, url, script, WARM_UP_S, connections, f"W{uuid.uuid4().hex[:6]}n")
    bank_pids, proxy_pids = process_tree(bank), process_tree(proxy_pid)
    bank_cpu, proxy_cpu = cpu_seconds(bank_pids), cpu_seconds(proxy_pids)
    machine, wrk_cpu, started = machine_busy_seconds(), resource_children_seconds(), time.monotonic()
    result, _ = run_wrk(wrk, url, script, seconds, connections, f"R{uuid.uuid4().hex[:6]}n")
    elapsed = time.monotonic() - started
    bank_cpu = cpu_seconds(bank_pids) - bank_cpu
    proxy_cpu = cpu_seconds(proxy_pids) - proxy_cpu
    wrk_cpu = resource_children_seconds() - wrk_cpu
    other = machine_busy_seconds() - machine - bank_cpu - proxy_cpu - wrk_cpu
    return Side(
        requests=result["requests"],
        requests_per_s=result["requests"] / (result["duration_us"] / 1e6),
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        errors=result["errors"],
        non_2xx=result["non2xx"],
        answered_0=result["answered_0"],
        flagged=result["flagged"],
        bank_cores=bank_cpu / elapsed,
        proxy_cores=proxy_cpu / elapsed,
        wrk_cores=wrk_cpu / elapsed,
        other_cores=max(0.0, other / elapsed),
    )


def pacing(rate: float | None, connections: int) -> str:
    """wrk's delay() for `rate` calls a second in all over `connections` connections ("" unpaced)."""
    if not rate:
        return ""
    return f"function delay() return {1000 * connections / rate:.3f} end\n"


def measure(
    wrk: str,
    seconds: float,
    connections: int,
    proxy_first: bool,
    folder: Path,
    rate: float | None = None,
    proxy_workers: int = 1,
) -> Run:
    """One run: a new bank mock and a new proxy in front of it, both sides measured in turn (the proxy's
    first when `proxy_first`), then the proxy stopped with SIGINT and its verdict read."""
    script = folder / "generation.lua"
    script.write_text(
        LUA % {"path": OPERATIONS[OPERATION][1], "kind": "generation"} + COUNTING + pacing(rate, connections)
    )
    sides: dict[str, Side] = {}
    with contextlib.ExitStack() as stack:
        bank_url, bank = stack.enter_context(server("mock", "bank", WORKERS, folder / "bank.sqlite3"))
        proxied = stack.enter_context(
            proxy(bank_url, folder, proxy_workers)
        )  # stopped first, then the bank mock
        urls = {"straight": bank_url, "proxied": proxied.url}
        for name in ("proxied", "straight") if proxy_first else ("straight", "proxied"):
            sides[name] = measure_side(
                wrk, urls[name], script, seconds, connections, bank.pid, proxied.process.pid
            )
    return Run(
        straight=sides["straight"],
        proxied=sides["proxied"],
        proxy_first=proxy_first,
        proxy_exit=proxied.exit_code,
        proxy_summary=proxied.summary,
        proxy_exchanges=proxied.exchanges,
    )


def yes_no(value: bool) -> str:
    return "yes" if value else "NO"


def print_run(number: int, run: Run) -> None:
    s, p = run.straight, run.proxied
    others = max(s.other_cores, p.other_cores)
    print(
        f"  run {number} ({'proxy' if run.proxy_first else 'straight'} first): straight"
        f" {s.requests_per_s:.0f} req/s p50 {s.p50_ms:.2f} p99 {s.p99_ms:.2f} ms;"
        f" proxy {p.requests_per_s:.0f} req/s p50"
        f" {p.p50_ms:.2f} p99 {p.p99_ms:.2f} ms (+{run.added_p50_ms:.2f}, +{run.added_p99_ms:.2f}); proxy"
        f" cores {p.proxy_cores:.2f}, bank {p.bank_cores:.2f}, others {others:.2f};"
        f" answered 0 {p.answered_0}/{p.requests}; proxy exit {run.proxy_exit}: {run.proxy_summary}",
        flush=True,
    )


def print_table(runs: list[Run]) -> bool:
    """The medians of the runs, each figure's own, and the verdicts; True when the goals are met and
    every run's proxy answered every call 0 and reported no failure."""

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def ms(values: list[float]) -> str:
        return f"{median(values):.2f} ms"

    rows = [
        ("req/s", "straight", f"{median([r.straight.requests_per_s for r in runs]):,.0f}"),
        ("req/s", "through the proxy", f"{median([r.proxied.requests_per_s for r in runs]):,.0f}"),
        ("p50", "straight", ms([r.straight.p50_ms for r in runs])),
        ("p50", "through the proxy", ms([r.proxied.p50_ms for r in runs])),
        ("p99", "straight", ms([r.straight.p99_ms for r in runs])),
        ("p99", "through the proxy", ms([r.proxied.p99_ms for r in runs])),
        ("added p50", "by the proxy", ms([r.added_p50_ms for r in runs])),
        ("added p99", "by the proxy", ms([r.added_p99_ms for r in runs])),
        ("proxy's CPU", "through the proxy", f"{median([r.proxied.proxy_cores for r in runs]):.2f} cores"),
        (
            "others",
            "worst side",
            f"{max(max(r.straight.other_cores, r.proxied.other_cores) for r in runs):.2f} cores",
        ),
    ]
    print(f"{'figure':12} {'side':18} {'median of ' + str(len(runs)) + ' runs':>16}")
    print("-" * 48)
    for figure, side, value in rows:
        print(f"{figure:12} {side:18} {value:>16}")
    answered = all(r.proxied.all_answered_0 for r in runs)
    straight_answered = all(r.straight.all_answered_0 for r in runs)
    passed = all(r.proxy_passed for r in runs)
    added_p50 = median([r.added_p50_ms for r in runs])
    added_p99 = median([r.added_p99_ms for r in runs])
    checks = [
        (f"added p50 <= {GOALS['added_p50_ms']:g} ms", added_p50 <= GOALS["added_p50_ms"]),
        (f"added p99 <= {GOALS['added_p99_ms']:g} ms", added_p99 <= GOALS["added_p99_ms"]),
    ]
    print(
        f"\nevery call through the proxy answered 0: {yes_no(answered)} "
        f"(straight: {yes_no(straight_answered)}); the proxy reported no failure (exit 0, PASSED, no "
        f"violations header) in every run: {yes_no(passed)}"
    )
    print("goals: " + "; ".join(f"{text}: {'met' if ok else 'MISSED'}" for text, ok in checks))
    return answered and passed and all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds each side of a run is measured")
    parser.add_argument("--connections", type=int, default=10, help="wrk's connections (the issue: 10)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs, each on a new bank mock and proxy; medians shown"
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="N",
        help="pace both sides at N calls a second in all (default: as fast as each side answers)",
    )
    parser.add_argument(
        "--proxy-workers",
        type=int,
        default=1,
        metavar="N",
        help="the proxy's --workers (the bank mock keeps 1)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every run as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 unless the proxy adds at most {GOALS['added_p50_ms']:g} ms at p50 and "
        f"{GOALS['added_p99_ms']:g} ms at p99, answered every call 0 and reported no failure",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.duration <= 0 or args.connections < 1 or args.proxy_workers < 1:
        parser.error("--repeat and --connections take a whole number from 1, --duration seconds above 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate takes calls a second above 0")
    if args.rate and args.check:
        parser.error("--check holds the issue's measure, unpaced: give it without --rate")
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    print(
        f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
        f"Python {platform.python_version()}; {wrk_version}\n"
        f"wrk -t1 -c{args.connections}, {args.duration:g} s a side after {WARM_UP_S} s of warm-up"
        f"{f', paced at {args.rate:g} calls a second' if args.rate else ', unpaced'}; "
        f"bank mock with {WORKERS} worker, proxy with {args.proxy_workers}; "
        f"{args.repeat} run(s), medians shown\n",
        flush=True,
    )
    runs: list[Run] = []
    for number in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="mpesa-atm-proxy-bench-") as folder:
            run = measure(
                wrk,
                args.duration,
                args.connections,
                number % 2 == 0,
                Path(folder),
                args.rate,
                args.proxy_workers,
            )
        runs.append(run)
        print_run(number, run)
    print()
    met = print_table(runs)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        **dataclasses.asdict(run),
                        "added_p50_ms": run.added_p50_ms,
                        "added_p99_ms": run.added_p99_ms,
                    }
                    for run in runs
                ],
                indent=2,
            )
        )
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
