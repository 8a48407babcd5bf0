"""Load benchmark of the mocks: unique valid requests per operation from wrk (10 connections),
against `mpesa-atm serve <role> --workers N` and, in the same run, against Prism 5 mocking the same
document (`prism mock openapi/<role>.yaml`: no state, no rules, no journal; with --prism), the
ceiling (the mock's own app whose handlers answer a constant body: benchmarks/ceiling.py; with
--ceiling) and connexion alone with the same spec (--bare). With --postgres, also the shared store:
two `serve` instances on one PostgreSQL database, each given half of wrk's connections.

Prints requests/s, p50 and p99 latency, the ratio to Prism and to the ceiling, the share of calls
answered 0 (read back from the store), and the CPU the server and everything else used.

    python benchmarks/load.py --prism                          # every operation, 1 and 2 workers
    python benchmarks/load.py --check                          # the goals of issue 14 (exit 1: missed)
    python benchmarks/load.py --operations token_generation --workers 2 --duration 20 --repeat 3
    python benchmarks/load.py --postgres auto --operations token_generation,token_redemption --workers 2

wrk is the Debian/Ubuntu package `wrk`; run as root, the script installs it when it is missing.
Prism comes from the npm registry into ~/.cache/mpesa-atm/prism (`npm install`, once, when --prism
or --check asks for it; Node.js from Debian's packages when it is missing and the script is root).
--postgres needs psycopg (the package's `postgres` extra) and, for `auto`, PostgreSQL's server programs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

HERE = Path(__file__).resolve().parent
OPENAPI = HERE.parent / "openapi"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
PRISM_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mpesa-atm" / "prism"
OPERATIONS = {
    "token_generation": ("bank", "/token-generation"),
    "token_redemption": ("ipg", "/token-redemption"),
    "token_reversal": ("ipg", "/token-reversal"),
}
# What issue 14 asks of the bank mock with 2 workers on the 2-core reference machine (Token
# Generation; Token Redemption's figures against the same goals are printed beside it): 1.5 times
# Prism's requests/s in the same run, p99 at most 5 ms at 10 connections, every call answered 0
# and in the store.
GOALS = {"ratio_to_prism": 1.5, "p99_ms": 5.0, "answered_0": 1.0}
CHECKED = ("token_generation", "token_redemption")
WARM_UP_S = 2
# uvicorn's workers share one listening socket, and a fast worker may accept (nearly) every
# connection wrk opens at once: a point is measured again until each worker holds this share.
MIN_SHARE = 0.2
MAX_RATE = 20000  # an upper bound of requests/s, to seed enough tokens for a run
# The shared store's point (--postgres): this many `serve` instances on one PostgreSQL database, each
# loaded by a wrk of its own with an equal share of the connections (wrk sends to one host only).
INSTANCES = 2
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# One wrk Lua script for the three operations: each request unique by a counter under a prefix
# given on the command line (`-- PREFIX`); redemptions and reversals spend the seeded token PREFIX<n>.
LUA = r"""
local path, kind, prefix = "%(path)s", "%(kind)s", "X"
local counter = 0
local head = {["Content-Type"] = "application/json"}
function init(args) prefix = args[1] end
function request()
  counter = counter + 1
  local n = prefix .. counter
  local body
  if kind == "generation" then
    body = '{"input_CustomerMSISDN":"243843330333","input_Amount":"200","input_Currency":"CDF",'
      .. '"input_TransactionID":"' .. n .. '"}'
  else
    body = '{"input_Username":"fnb","input_Password":"P@ssword123","input_CustomerMSISDN":"243843330333",'
      .. '"input_Currency":"CDF","input_BankShortcode":"49272","input_Amount":"200",'
      .. '"input_ThirdPartyReference":"T' .. n .. '","input_BankTransactionRef":"' .. n .. '"'
    if kind == "reversal" then body = body .. ',"input_TransactionID":"' .. n .. '"' end
    body = body .. "}"
  end
  return wrk.format("POST", path, head, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"errors":%%d,"non2xx":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Point:
    operation: str
    target: str  # "mock", "postgres" (INSTANCES mocks on one database), "prism", "ceiling" or "bare"
    workers: int  # of each instance
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    answered_0: float | None  # share of measured calls the store shows as successes (mocks only)
    server_cores: float  # CPU the server's processes used, in cores
    wrk_cores: float
    other_cores: float  # CPU everything else on the machine used meanwhile
    connections_per_worker: str = ""  # each instance's split, "+" between instances
    instances: int = 1
    ratio_to_prism: float | None = None
    ratio_to_ceiling: float | None = None
    ratio_to_bare: float | None = None


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit(
            "load.py needs wrk (https://github.com/wg/wrk), the HTTP benchmarking tool: install the\n"
            "Debian/Ubuntu package with `sudo apt-get install wrk` (or `brew install wrk`), then run again."
        )
    return found


def ensure_prism() -> str:
    """The `prism` command: on PATH, in the cache folder, or installed there from npm."""
    found = shutil.which("prism")
    cached = PRISM_HOME / "node_modules" / ".bin" / "prism"
    if found or cached.exists():
        return found or str(cached)
    npm = shutil.which("npm")
    if npm is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("npm is missing: apt-get install -y nodejs npm", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nodejs", "npm"], check=True)
        npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "load.py --prism needs Node.js and npm to install Prism (https://stoplight.io/open-source/prism):\n"
            "install Debian's `nodejs` and `npm` packages, or put a `prism` command on PATH, then run again."
        )
    print(f"installing {PRISM_PACKAGE} into {PRISM_HOME}", flush=True)
    PRISM_HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(PRISM_HOME),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            PRISM_PACKAGE,
        ],
        check=True,
    )
    return str(cached)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, each after its parent ([pid] when it is gone)."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return [pid]


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of the processes (those gone meanwhile count nothing)."""
    seconds = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            seconds += times.user + times.system
    return seconds


def machine_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(
    target: str,
    role: str,
    workers: int,
    db: Path | str,
    prism: str | None = None,
    log_path: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mpesa-atm serve <role>`, Prism on the role's document, or a ceiling under uvicorn with the
    same uvicorn settings. `db` is a SQLite file (the log beside it unless `log_path` says) or a
    PostgreSQL URL (then `log_path` is needed)."""
    if log_path is None:
        assert isinstance(db, Path), "a PostgreSQL store's server needs a log_path"
        log_path = db.with_suffix(".log")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    if target == "mock":
        command = [sys.executable, "-m", "mpesa_atm", "serve", role, "--port", str(port)]
        command += ["--workers", str(workers), "--db", str(db)]
    elif target == "prism":  # one Node.js process, whatever the mock's workers
        assert prism is not None
        document = str(OPENAPI / f"{role}.yaml")
        command = [prism, "mock", document, "-p", str(port), "-h", "127.0.0.1", "-v", "silent"]
    else:  # as cli.py runs uvicorn: log level warning, no access log
        factory = f"ceiling:{role}_ceiling" if target == "ceiling" else f"ceiling:bare_{role}_ceiling"
        command = [sys.executable, "-m", "uvicorn", factory, "--factory"]
        env["MPESA_ATM_DB"] = str(db)  # the ceiling's app opens its store, and never writes to it
        command += [
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    log = log_path.open("wb")
    process = subprocess.Popen(
        command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited: {log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target} did not listen on {port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the session started above: server and workers
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def seed_tokens(db: Path | str, prefix: str, count: int) -> None:
    """Tokens PREFIX1..PREFIXcount for the document's bank, as the iPG mock stores them, in the
    SQLite file or the PostgreSQL database (a URL)."""
    if isinstance(db, str):
        seed_postgres_tokens(db, prefix, count)
        return
    from mpesa_atm.mocks.store import Store  # the package under test, only when seeding

    Store(str(db)).close()  # the schema
    now = time.time()
    with sqlite3.connect(db) as connection:
        connection.executemany(
            "INSERT INTO ipg_tokens VALUES ('fnb', ?, ?, '243843330333', '200.00', 'CDF', ?, NULL, NULL)",
            ((f"{prefix}{i}", f"{prefix}{i}", now) for i in range(1, count + 1)),
        )


def successes(db: Path | str, operation: str) -> int:
    """The calls the store shows as answered 0: in the SQLite file, or in the PostgreSQL database."""
    query = "SELECT COUNT(*) FROM ipg_transactions WHERE operation = ?"
    values: tuple[str, ...] = (operation,)
    if operation == "token_generation":
        query, values = "SELECT COUNT(*) FROM bank_tokens", ()
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db) as connection:
            row = connection.execute(query.replace("?", "%s"), values).fetchone()
            assert row is not None
            return int(row[0])
    with sqlite3.connect(db) as connection:
        return int(connection.execute(query, values).fetchone()[0])


def seed_postgres_tokens(url: str, prefix: str, count: int) -> None:
    """`seed_tokens`' rows in the PostgreSQL store, by COPY into its own schema."""
    import psycopg

    from mpesa_atm.mocks.storage import open_store  # the package under test, only when seeding

    open_store(url).close()  # the schema
    now = time.time()
    with psycopg.connect(url) as connection:
        with connection.cursor() as cursor, cursor.copy("COPY ipg_tokens FROM STDIN") as copy:
            for i in range(1, count + 1):
                token = f"{prefix}{i}"
                copy.write_row(("fnb", token, token, "243843330333", "200.00", "CDF", now, None, None))
        # Statistics now rather than from autovacuum's ANALYZE in the middle of the measured run.
        connection.execute("ANALYZE ipg_tokens")


@dataclass
class PostgresServer:
    """Where --postgres points: a server on which new databases can be made (a fresh one a point)
    and, for the throwaway cluster of `--postgres auto`, its postmaster, whose processes count as
    the server's CPU (a server of the user's counts in "others" when it runs on this machine)."""

    url: str  # of a database to connect to while making and dropping the points' databases
    postmaster: int | None = None

    def cpu_seconds(self) -> float:
        """CPU the cluster's processes used so far, those running and those the postmaster waited
        for: backends and autovacuum workers come and go during a run."""
        if self.postmaster is None:
            return 0.0
        times = psutil.Process(self.postmaster).cpu_times()
        waited = times.children_user + times.children_system
        return cpu_seconds(process_tree(self.postmaster)) + waited

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new empty database's URL, dropped after the point with what is still connected to it."""
        import psycopg

        name = f"mpesa_atm_load_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        try:
            yield urlsplit(self.url)._replace(path=f"/{name}").geturl()
        finally:
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresServer]:
    """`--postgres auto`: the tests' throwaway cluster (tests/fixtures/postgres_cluster.py) for the
    run: initdb with trust authentication in a temporary folder, on a free loopback port, stopped and
    removed at the end. As root, its programs run as the `postgres` system user (initdb and postgres
    refuse root)."""
    sys.path.insert(1, str(HERE.parent))  # the checkout's root (after this folder), where tests/ is
    from tests.fixtures.postgres_cluster import (
        PostgresUnavailable,
        postgres_programs,
        server_user,
        throwaway_cluster,
    )

    try:
        programs, run_as = postgres_programs(), server_user()
    except PostgresUnavailable as missing:
        sys.exit(
            f"load.py --postgres auto: {missing}; or give the URL of a server with --postgres postgresql://..."
        )
    with throwaway_cluster(programs, run_as, prefix="mpesa-atm-load-postgres-") as cluster:
        yield PostgresServer(cluster.url("postgres"), cluster.postmaster)


def connection_split(pids: list[int], port: int, remote: bool = False) -> list[int]:
    """How many connections to `port` each process holds, most first (from /proc): accepted on
    that local port, or with `remote` made to that port."""
    owner: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        owner[link[8:-1]] = pid
    counts: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                end, state, inode = fields[2 if remote else 1], fields[3], fields[9]
                if state == "01" and int(end.rsplit(":", 1)[1], 16) == port and inode in owner:
                    counts[owner[inode]] = counts.get(owner[inode], 0) + 1
    return sorted(counts.values(), reverse=True)


def wait_for_stores(processes: list[int], workers: int, url: str) -> None:
    """Until every worker of each instance (the process trees `processes`) holds a connection to the
    database at `url`. A worker opens its store as it starts, and the schema's statements it runs
    then (CREATE INDEX IF NOT EXISTS takes a SHARE lock on its table even when the index exists)
    hold up every other worker's writes: a worker still starting after the warm-up stalled whole
    measured runs. A server reached by a Unix socket is not seen in /proc/net/tcp: no wait."""
    place = urlsplit(url)
    if not place.hostname:
        return
    deadline = time.monotonic() + 60
    while any(
        len(connection_split(process_tree(pid), place.port or 5432, remote=True)) < workers
        for pid in processes
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not all connect to {place.hostname}:{place.port} in 60 s")
        time.sleep(0.1)


class Unbalanced(Exception):
    """The connections went to the workers too unevenly to measure them all (see README)."""


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    seconds: float,
    connections: int,
    prefix: str,
    processes: list[int] | None = None,
    workers: int = 1,
) -> tuple[dict[str, int], list[int]]:
    """wrk's summary and, given the server's pids, how its connections were split among them."""
    summaries, splits = run_wrks(
        wrk, [url], script, seconds, connections, [prefix], [processes or []], workers
    )
    return summaries[0], splits[0]


def run_wrks(
    wrk: str,
    urls: list[str],
    script: Path,
    seconds: float,
    connections: int,
    prefixes: list[str],
    processes: list[list[int]],
    workers: int = 1,
) -> tuple[list[dict[str, int]], list[list[int]]]:
    """`run_wrk` against several servers at once, a wrk each with `connections` and its own prefix:
    their summaries and, for each server whose pids are given, how its connections were split."""
    running = []
    for url, prefix in zip(urls, prefixes, strict=True):
        command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url, "--", prefix]
        running.append((command, subprocess.Popen(command, stdout=subprocess.PIPE, text=True)))
    splits: list[list[int]] = [[] for _ in urls]
    if any(processes):
        time.sleep(0.5)
        for i, (url, pids) in enumerate(zip(urls, processes, strict=True)):
            splits[i] = connection_split(pids, int(url.rsplit(":", 1)[1])) if pids else []
        # uvicorn's workers share one listening socket: now and then one of them takes (nearly)
        # every connection, and then two workers measure as one.
        if workers > 1 and any(
            pids and (len(split) < workers or split[-1] < MIN_SHARE * connections)
            for pids, split in zip(processes, splits, strict=True)
        ):
            for _, process in running:
                process.terminate()
                process.wait()
            raise Unbalanced(" + ".join(map(str, splits)))
    summaries = []
    for command, process in running:
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode})")
        line = next(line for line in out.splitlines() if line.startswith('{"requests"'))
        summaries.append(dict(json.loads(line)))
    return summaries, splits


def measure(
    wrk: str,
    operation: str,
    target: str,
    workers: int,
    seconds: float,
    connections: int,
    folder: Path,
    prism: str | None = None,
    postgres: PostgresServer | None = None,
) -> Point:
    """One run of a point. For "postgres", INSTANCES mocks on a fresh database of `postgres`, each
    loaded by its own wrk with an equal share of the connections at the same time: requests/s summed,
    p50 and p99 the worse of the wrks', the server's CPU that of every instance and of the cluster."""
    role, path = OPERATIONS[operation]
    kind = operation.removeprefix("token_")
    script = folder / f"{kind}.lua"
    script.write_text(LUA % {"path": path, "kind": kind})
    name = f"{operation}-{target}-{workers}-{uuid.uuid4().hex[:6]}"
    instances = INSTANCES if target == "postgres" else 1
    warm = [f"W{uuid.uuid4().hex[:6]}n" for _ in range(instances)]
    run = [f"R{uuid.uuid4().hex[:6]}n" for _ in range(instances)]
    stored = target in ("mock", "postgres")  # the mock itself, whose store says what it answered
    with contextlib.ExitStack() as stack:
        db: Path | str = folder / f"{name}.sqlite3"
        if target == "postgres":
            assert postgres is not None
            db = stack.enter_context(postgres.fresh_database())
        if stored and role == "ipg":
            for prefix in warm:
                seed_tokens(db, prefix, WARM_UP_S * MAX_RATE)
            for prefix in run:
                seed_tokens(db, prefix, int(seconds * MAX_RATE))
        serving = [
            stack.enter_context(
                server(
                    "mock" if target == "postgres" else target,
                    role,
                    workers,
                    db,
                    prism,
                    folder / (f"{name}-{i}.log" if instances > 1 else f"{name}.log"),
                )
            )
            for i in range(instances)
        ]
        urls = [url for url, _ in serving]
        share = connections // instances
        if isinstance(db, str):
            wait_for_stores([process.pid for _, process in serving], workers, db)
        # Every worker up, caches warm.
        run_wrks(wrk, urls, script, WARM_UP_S, share, warm, [[] for _ in urls])
        before = successes(db, operation) if stored else 0
        trees = [process_tree(process.pid) for _, process in serving]
        pids = [pid for tree in trees for pid in tree]
        cluster = postgres if target == "postgres" else None
        server_cpu = cpu_seconds(pids) + (cluster.cpu_seconds() if cluster else 0.0)
        machine, started = machine_busy_seconds(), time.monotonic()
        wrk_cpu = resource_children_seconds()
        # Prism is one process. A shared point is not measured again for its split: with 5
        # connections an instance's first worker to wake usually takes all 5 (the split is shown).
        balanced = workers if target not in ("prism", "postgres") else 1
        results, splits = run_wrks(wrk, urls, script, seconds, share, run, trees, balanced)
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(pids) + (cluster.cpu_seconds() if cluster else 0.0) - server_cpu
        wrk_cpu = resource_children_seconds() - wrk_cpu
        other = machine_busy_seconds() - machine - server_cpu - wrk_cpu
        requests = sum(result["requests"] for result in results)
        answered = None
        if stored:
            answered = min(1.0, (successes(db, operation) - before) / max(requests, 1))
    return Point(
        operation=operation,
        target=target,
        workers=workers,
        requests_per_s=sum(result["requests"] / (result["duration_us"] / 1e6) for result in results),
        p50_ms=max(result["p50_us"] for result in results) / 1000,
        p99_ms=max(result["p99_us"] for result in results) / 1000,
        errors=sum(result["errors"] for result in results),
        non_2xx=sum(result["non2xx"] for result in results),
        answered_0=answered,
        server_cores=server_cpu / elapsed,
        wrk_cores=wrk_cpu / elapsed,
        other_cores=max(0.0, other / elapsed),
        connections_per_worker="+".join("/".join(map(str, split)) for split in splits),
        instances=instances,
    )


def measure_balanced(
    wrk: str,
    operation: str,
    target: str,
    workers: int,
    seconds: float,
    connections: int,
    folder: Path,
    prism: str | None = None,
    postgres: PostgresServer | None = None,
) -> Point:
    """`measure`, on a new server when the connections went (nearly) all to one worker."""
    for attempt in range(1, 11):
        try:
            return measure(wrk, operation, target, workers, seconds, connections, folder, prism, postgres)
        except Unbalanced as exc:
            print(
                f"  {operation} {target} x{workers}: connections split {exc}, again ({attempt})", flush=True
            )
    raise SystemExit("the connections kept going to one worker; try more --connections")


def resource_children_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def median_point(points: list[Point]) -> Point:
    """The run with the median requests/s, the slower one of two (figures of one real run, not a
    blend of several)."""
    ordered = sorted(points, key=lambda p: p.requests_per_s)
    return ordered[(len(ordered) - 1) // 2]


def print_table(points: list[Point]) -> None:
    header = (
        f"{'operation':17} {'target':8} {'workers':>7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'vs prism':>8} {'vs ceiling':>10} {'vs bare':>7} {'answered 0':>10} {'connections':>11} "
        f"{'server cores':>12} {'others':>6} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for p in points:
        prism = f"{p.ratio_to_prism:.2f}x" if p.ratio_to_prism is not None else "-"
        ratio = f"{p.ratio_to_ceiling:.0%}" if p.ratio_to_ceiling is not None else "-"
        bare = f"{p.ratio_to_bare:.0%}" if p.ratio_to_bare is not None else "-"
        answered = f"{p.answered_0:.1%}" if p.answered_0 is not None else "-"
        workers = f"{p.instances}x{p.workers}" if p.instances > 1 else str(p.workers)
        print(
            f"{p.operation:17} {p.target:8} {workers:>7} {p.requests_per_s:>8.0f} {p.p50_ms:>7.2f} "
            f"{p.p99_ms:>7.2f} {prism:>8} {ratio:>10} {bare:>7} {answered:>10} "
            f"{p.connections_per_worker:>11} {p.server_cores:>12.2f} {p.other_cores:>6.2f} "
            f"{p.errors + p.non_2xx:>6}"
        )


def print_goals(points: list[Point]) -> bool:
    """The goals for the bank mock's Token Generation with 2 workers, and the same figures for Token
    Redemption beside it; True when the bank mock meets every one (issue 14's --check)."""
    met = True
    for operation in CHECKED:
        mock = next((p for p in points if (p.operation, p.target, p.workers) == (operation, "mock", 2)), None)
        if mock is None:
            continue
        checks = [
            (f"p99 <= {GOALS['p99_ms']:g} ms", mock.p99_ms <= GOALS["p99_ms"]),
            (
                "every call answered 0 and in the store",
                mock.answered_0 is not None
                and mock.answered_0 >= GOALS["answered_0"]
                and mock.errors + mock.non_2xx == 0,
            ),
        ]
        if mock.ratio_to_prism is not None:
            ratio = f">= {GOALS['ratio_to_prism']:g}x Prism ({mock.ratio_to_prism:.2f}x)"
            checks.insert(0, (ratio, mock.ratio_to_prism >= GOALS["ratio_to_prism"]))
        else:
            checks.insert(0, ("the ratio to Prism (not measured: --prism)", False))
        checked = operation == "token_generation"
        print(
            f"\n{OPERATIONS[operation][0]} mock, {operation}, 2 workers"
            + ("" if checked else " (beside it, not part of --check's exit code)")
            + ": "
            + "; ".join(f"{t}: {'met' if ok else 'MISSED'}" for t, ok in checks)
        )
        if checked:
            met = met and all(ok for _, ok in checks)
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", default=",".join(OPERATIONS), help="comma-separated operationIds")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--duration", type=float, default=10, help="seconds a point is measured")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs a point, ceiling and mock in turn; the median is shown"
    )
    parser.add_argument(
        "--prism", action="store_true", help="also measure Prism 5 on the same document (npm install once)"
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also measure the mock's app with constant handlers (ceiling.py)",
    )
    parser.add_argument(
        "--bare", action="store_true", help="also measure connexion alone with the spec (ceiling.py)"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL|auto",
        help=f"also measure {INSTANCES} instances of the mock on one PostgreSQL database, each given half of "
        "the connections (a fresh database a point, made with CREATE DATABASE on the server of URL; "
        "auto: a throwaway cluster of our own)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every run as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="with Prism, Token Generation and Redemption with 2 workers unless told otherwise; "
        "exit 1 when the bank mock misses a goal (Token Redemption's figures are printed beside it)",
    )
    args = parser.parse_args(argv)
    if args.check:
        args.prism = True
        if args.operations == parser.get_default("operations"):
            args.operations = ",".join(CHECKED)
        if args.workers == parser.get_default("workers"):
            args.workers = "2"
    operations = [op.strip() for op in args.operations.split(",")]
    unknown = set(operations) - set(OPERATIONS)
    if unknown:
        parser.error(f"unknown operation(s) {sorted(unknown)}; choose from {', '.join(OPERATIONS)}")
    workers = [int(w) for w in args.workers.split(",")]
    if args.postgres and not (args.postgres == "auto" or args.postgres.startswith(POSTGRES_SCHEMES)):
        parser.error("--postgres takes a postgresql:// URL or auto")
    if args.postgres and args.connections % INSTANCES:
        parser.error(f"--postgres shares the connections among {INSTANCES} instances: give a multiple of it")
    targets = ["mock"]
    if args.postgres:
        targets.append("postgres")
    if args.ceiling:
        targets.insert(0, "ceiling")
    if args.bare:
        targets.insert(0, "bare")
    if args.prism:
        targets.insert(0, "prism")
    wrk = ensure_wrk()
    prism = ensure_prism() if args.prism else None
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    print(
        f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
        f"Python {platform.python_version()}; {wrk_version}\n"
        f"wrk -t1 -c{args.connections}, {args.duration:g} s a point after {WARM_UP_S} s of warm-up; "
        f"{args.repeat} run(s) a point, median shown\n",
        flush=True,
    )
    if args.postgres:
        print(
            f"postgres: {INSTANCES} instances of the mock on one database, "
            f"wrk -t1 -c{args.connections // INSTANCES} on each at once\n"
            "(req/s summed, p50 and p99 the worse of the two); mock: one instance on SQLite\n",
            flush=True,
        )
    runs: list[Point] = []
    shown: list[Point] = []
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mpesa-atm-load-"))
        postgres = None
        if args.postgres:
            if importlib.util.find_spec("psycopg") is None:  # before any point is measured
                sys.exit("load.py --postgres needs psycopg: pip install 'mpesa-atm-harness[postgres]'")
            if args.postgres == "auto":
                postgres = stack.enter_context(throwaway_postgres())
            else:
                postgres = PostgresServer(args.postgres)
        for operation in operations:
            for count in workers:
                by_target: dict[str, list[Point]] = {t: [] for t in targets}
                for _ in range(args.repeat):
                    for target in targets:
                        point = measure_balanced(
                            wrk,
                            operation,
                            target,
                            count,
                            args.duration,
                            args.connections,
                            Path(tmp),
                            prism,
                            postgres,
                        )
                        by_target[target].append(point)
                        runs.append(point)
                        print(
                            f"  {operation} {target} x{count}: {point.requests_per_s:.0f} req/s, "
                            f"p99 {point.p99_ms:.2f} ms, connections {point.connections_per_worker}, "
                            f"others {point.other_cores:.2f} cores",
                            flush=True,
                        )
                chosen = {t: median_point(ps) for t, ps in by_target.items()}
                for mock in (chosen[t] for t in ("mock", "postgres") if t in chosen):
                    if "prism" in chosen:
                        mock.ratio_to_prism = mock.requests_per_s / chosen["prism"].requests_per_s
                    if "ceiling" in chosen:
                        mock.ratio_to_ceiling = mock.requests_per_s / chosen["ceiling"].requests_per_s
                    if "bare" in chosen:
                        mock.ratio_to_bare = mock.requests_per_s / chosen["bare"].requests_per_s
                shown.extend(chosen[t] for t in targets)
    print()
    print_table(shown)
    met = print_goals(shown)
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(p) for p in runs], indent=2))
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
