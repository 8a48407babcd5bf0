"""Retention: tokens and transactions older than `retention_days` leave the store, in small batches
written with the calls' own writes, so that a sandbox left running for months stays the size that
`retention_days` of its load make. The proxy's ledger (proxy/ledger.py) is pruned the same way: its
tables given as `tables`.

Every worker of a role prunes its role's tables in turn: a pass every `interval` seconds queues one
batch (`BATCH` rows of a table) in the write transaction after its event loop's turn (store.in_next_write),
and another while the last one removed rows, yielding to the loop between batches. No worker is
elected (uvicorn's workers are alike, and one that dies is replaced); a worker that finds nothing
has spent one read of the table's first rows. Rows go oldest-written first (rowid order), each only
when its own `created_at` is past retention: a row is never removed early, whatever order the clock
wrote them in.

What is removed is answered as the window already answers it: retention is never shorter than
token_ttl, so a removed iPG token was past its window (-9), and a removed transaction's token was too
(a replay of it is -9, not -3). A bank token removed is a TransactionID the bank no longer knows: a
replay of it after retention is a new Token Generation (docs/spec-notes.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.records import ROLE_TABLES
from mpesa_atm.mocks.storage import Storage, Transaction
from mpesa_atm.operations import Role
from mpesa_atm.settings import Settings

__all__ = ["BATCH", "Retention", "interval_for"]

# Rows removed in one write, which holds the event loop while it runs: small enough that a batch
# costs a call's latency about a millisecond at a million tokens (the timings: benchmarks/README.md,
# "Soak", the batch size).
BATCH = 100


def interval_for(settings: Settings) -> float:
    """Seconds between passes: a twentieth of retention, between 50 ms (a test's retention of seconds)
    and 5 s (7 days: at 5,000 tokens a second, 25,000 rows a pass, 250 batches)."""
    return min(max(settings.retention.total_seconds() / 20, 0.05), 5.0)


def _remove_older(tx: Transaction, table: str, cutoff: float, batch: int) -> int:
    return tx.remove_older(table, cutoff, batch)


class Retention:
    """The pruning task of one worker's role: start() in the app's lifespan, stop() at its end."""

    def __init__(
        self,
        store: Storage,
        role: Role,
        settings: Settings,
        *,
        batch: int = BATCH,
        tables: Sequence[str] | None = None,
    ) -> None:
        """`tables`: others than the role's (ROLE_TABLES), such as the proxy's LEDGER_TABLES."""
        self.store = store
        self.tables = tuple(tables) if tables is not None else ROLE_TABLES[role]
        self.settings = settings
        self.batch = batch
        self.interval = interval_for(settings)
        self.removed = 0  # rows this worker removed
        self.passes = 0
        self.batches = 0
        self.slowest_batch = 0.0  # seconds of the longest batch's write, for the measurements
        self._task: asyncio.Task[None] | None = None

    async def prune(self) -> int:
        """One pass: every table of the role, batch after batch until a batch removes nothing."""
        cutoff = self.settings.clock().timestamp() - self.settings.retention.total_seconds()
        removed = 0
        for table in self.tables:
            while True:
                started = time.perf_counter()
                count = await self.store.in_next_write(
                    functools.partial(_remove_older, table=table, cutoff=cutoff, batch=self.batch)
                )
                self.batches += 1
                self.slowest_batch = max(self.slowest_batch, time.perf_counter() - started)
                removed += count
                if not count:
                    break
                await asyncio.sleep(0)  # the calls queued meanwhile have their turn first
        self.removed += removed
        self.passes += 1
        return removed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(StoreBusy):  # the calls got -7 meanwhile; the next pass goes on
                await self.prune()

    def start(self) -> Retention:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mpesa-atm-retention")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
