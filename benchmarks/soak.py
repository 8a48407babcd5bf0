"""Soak benchmark: the usual load (load.py's wrk script, 10 connections) against a store already
holding N tokens (default 1,000,000), beside the same load against a fresh store.

For Token Generation the store holds N bank tokens; for Token Redemption N iPG tokens, half of them
redeemed (a transaction each). Prints requests/s and p99 for both stores, the database's and the
WAL's sizes before and after the run, and the workers' resident memory before and after.

    python benchmarks/soak.py                                  # 1,000,000 tokens, both operations
    python benchmarks/soak.py --tokens 200000 --duration 10 --operations token_generation

Seeding path: SQL INSERTs in the store's own schema (Store() creates it), in one transaction per
100,000 rows, with references in the format the mocks make (time-ordered bank references, random
TransactionIDs), created_at spread over the last day: inside retention, so none is pruned during
the run. This is the fastest documented path (the API would take N / 5,000 s).
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from load import LUA, MAX_RATE, OPERATIONS, WARM_UP_S, ensure_wrk, process_tree, run_wrk, seed_tokens, server

CHUNK = 100_000


def seed_store(db: Path, operation: str, count: int) -> float:
    """N tokens for `operation`'s role through SQL in the schema; the seconds it took."""
    from mpesa_atm.mocks.store import Store  # the package under test, only when seeding

    started = time.perf_counter()
    Store(str(db)).close()  # the schema
    now = time.time()
    with sqlite3.connect(db) as connection:
        for first in range(0, count, CHUNK):
            span = range(first, min(first + CHUNK, count))
            at = [now - 86400 + 86400 * i / count for i in span]
            if operation == "token_generation":
                connection.executemany(
                    "INSERT INTO bank_tokens VALUES (?, ?, '243843330333', '200.00', 'CDF', NULL,"
                    " '20261129 000000', ?)",
                    (
                        (f"{int(t * 1e6):013x}{secrets.token_hex(10)[:19]}", uuid.uuid4().hex[:20], t)
                        for t in at
                    ),
                )
            else:
                refs = [uuid.uuid4().hex for _ in span]
                connection.executemany(
                    "INSERT INTO ipg_tokens VALUES"
                    " ('fnb', ?, ?, '243843330333', '200.00', 'CDF', ?, ?, NULL)",
                    (
                        (r, r[:20], t, t if i % 2 else None)
                        for i, (r, t) in enumerate(zip(refs, at, strict=True))
                    ),
                )
                connection.executemany(
                    "INSERT INTO ipg_transactions VALUES (?, 'token_redemption', 'fnb', ?, ?, ?, ?)",
                    (
                        (
                            f"{int(t * 1000):08x}{secrets.token_hex(6)[:11]}",
                            secrets.token_hex(16),
                            r,
                            r[:20],
                            t,
                        )
                        for i, (r, t) in enumerate(zip(refs, at, strict=True))
                        if i % 2
                    ),
                )
            connection.commit()
        # The WAL as a long-running store leaves it (mocks/wal.py), not as one seeding left it.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def prune_all(db: Path, role: str) -> tuple[int, int, float, float]:
    """Removes every row of the soaked store as retention would, a year on: (rows, batches, the
    mean and the longest batch's seconds)."""
    import asyncio
    from datetime import timedelta

    from mpesa_atm.mocks.retention import Retention
    from mpesa_atm.mocks.store import Store
    from mpesa_atm.settings import Settings, utc_now

    settings = Settings(db_path=str(db), clock=lambda: utc_now() + timedelta(days=365))

    async def run() -> tuple[int, int, float, float]:
        store = Store(str(db))
        try:
            retention = Retention(store, role, settings)  # type: ignore[arg-type]
            started = time.perf_counter()
            removed = await retention.prune()
            elapsed = time.perf_counter() - started
            return removed, retention.batches, elapsed / max(retention.batches, 1), retention.slowest_batch
        finally:
            store.close()

    return asyncio.run(run())


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def rss_mb(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return out


def run(
    wrk: str, operation: str, tokens: int, workers: int, seconds: float, folder: Path
) -> dict[str, object]:
    role, path = OPERATIONS[operation]
    kind = operation.removeprefix("token_")
    script = folder / f"{kind}.lua"
    script.write_text(LUA % {"path": path, "kind": kind})
    db = folder / f"{operation}-{tokens}.sqlite3"
    seeded = seed_store(db, operation, tokens) if tokens else 0.0
    warm, measured = f"W{uuid.uuid4().hex[:6]}n", f"R{uuid.uuid4().hex[:6]}n"
    if role == "ipg":
        seed_tokens(db, warm, WARM_UP_S * MAX_RATE)
        seed_tokens(db, measured, int(seconds * MAX_RATE))
    sizes_before = (size(db), size(Path(f"{db}-wal")))
    with server("mock", role, workers, db) as (url, process):
        pids = process_tree(process.pid)[1:]
        run_wrk(wrk, url, script, WARM_UP_S, 10, warm)
        memory_before = rss_mb(pids)
        result, _ = run_wrk(wrk, url, script, seconds, 10, measured)
        memory_after = rss_mb(pids)
        sizes_after = (size(db), size(Path(f"{db}-wal")))
    pruned = prune_all(db, role) if tokens else (0, 0, 0.0, 0.0)
    return {
        "pruned": pruned,
        "operation": operation,
        "tokens": tokens,
        "seed_s": seeded,
        "requests_per_s": result["requests"] / (result["duration_us"] / 1e6),
        "p99_ms": result["p99_us"] / 1000,
        "errors": result["errors"] + result["non2xx"],
        "db_mb": (sizes_before[0] / 1e6, sizes_after[0] / 1e6),
        "wal_mb": (sizes_before[1] / 1e6, sizes_after[1] / 1e6),
        "rss_mb": (memory_before, memory_after),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens in the soaked store")
    parser.add_argument("--operations", default="token_generation,token_redemption")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10, help="seconds a point is measured")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpesa-atm-soak-") as tmp:
        for operation in args.operations.split(","):
            for tokens in (0, args.tokens):
                row = run(wrk, operation, tokens, args.workers, args.duration, Path(tmp))
                rows.append(row)
                print(
                    f"{operation:17} {tokens:>9,} tokens (seeded in {row['seed_s']:.1f} s):"
                    f" {row['requests_per_s']:8,.0f} req/s  p99 {row['p99_ms']:6.2f} ms"
                    f"  errors {row['errors']}"
                    f"  db {row['db_mb'][0]:.1f} -> {row['db_mb'][1]:.1f} MB"  # type: ignore[index]
                    f"  wal {row['wal_mb'][0]:.1f} -> {row['wal_mb'][1]:.1f} MB"  # type: ignore[index]
                    f"  workers' RSS {'/'.join(f'{m:.0f}' for m in row['rss_mb'][0])}"  # type: ignore[index]
                    f" -> {'/'.join(f'{m:.0f}' for m in row['rss_mb'][1])} MB",  # type: ignore[index]
                    flush=True,
                )
                removed, batches, mean, slowest = row["pruned"]  # type: ignore[misc]
                if batches:
                    print(
                        f"  then retention removed {removed:,} rows in {batches:,} batches:"
                        f" {mean * 1000:.2f} ms a batch, the longest {slowest * 1000:.2f} ms",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
