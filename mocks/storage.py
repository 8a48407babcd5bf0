"""The one storage interface of the mocks, and the choice of its backend.

Two backends keep the mocks' state: `store.Store`, one SQLite file that the workers of one machine
share (the default), and `pg_store.PostgresStore`, one PostgreSQL database that several instances
on several machines share (`--db postgresql://...`). The rules, the fault layer, the control API,
the journal layer and retention know only the protocol below; `tests/mocks/test_storage.py` runs
one contract suite against both backends.

A decision is a function of a `Transaction` (`Storage.in_next_write`): it reads and writes through
the transaction's methods (mocks/statements.py: one set of statements both backends run) and
returns the answer. It may run more than once (PostgreSQL runs it again when a concurrent
transaction committed a conflicting row first), so it has no other effect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol, TypeVar

from mpesa_atm.errors import ConfigError
from mpesa_atm.mocks.records import JournalEntry, JournalRecord, Kept
from mpesa_atm.mocks.statements import Transaction
from mpesa_atm.settings import database_label, is_database_url

__all__ = ["BUSY", "Kept", "Storage", "Transaction", "open_store"]

T = TypeVar("T")

# The reason of a -7 (System Busy) answered when the store stays locked (SQLite), or out of reach
# (PostgreSQL), past the busy timeout: StoreBusy.
BUSY = "the mock's database stayed busy or out of reach"


class Storage(Protocol):
    """What the mocks keep: tokens, transactions, fault rules, modes, calls under way, the journal.

    Every use is a coroutine, and each backend runs its blocking work where it belongs, so that the
    event loop never waits for a slow database and no caller has to know which method blocks: SQLite
    at once on the loop (a local file, and the connection belongs to the loop's thread), PostgreSQL
    in the store's threads. Only close() is plain: its owner's last call, from an app's lifespan or
    from a command that opened the store to make its tables."""

    def close(self) -> None: ...

    async def config_version(self) -> int:
        """A number that changes whenever any worker changes fault rules or modes."""
        ...

    async def health(self) -> str | None:
        """Why this worker cannot use the store now (`/_harness/health` says it with a 503), or None.
        Cheap enough to be asked in a loop: no write per call."""
        ...

    async def write(self, work: Callable[[Transaction], T]) -> T:
        """`work` in a transaction of its own, now (the control API's writes), committed before this
        returns; its exception, after nothing was written."""
        ...

    async def in_next_write(self, work: Callable[[Transaction], T]) -> T:
        """`work` in the write transaction after this turn of the event loop, shared with what else
        this worker queued in the turn (the calls' decisions); after the COMMIT."""
        ...

    async def journal_in_next_write(self, record: JournalRecord) -> None: ...

    async def reset(self, role: str, username: str | None = None) -> None: ...

    async def counts(self, role: str) -> Kept:
        """How many tokens, transactions and fault rules of `role` the store holds, and whether its
        modes were set: one count a table (`serve` says it, once, before its workers start)."""
        ...

    async def fault_add(self, role: str, rule_id: str, spec: str, times: int | None, at: float) -> None: ...

    async def fault_list(self, role: str) -> list[tuple[str, int | None]]: ...

    async def fault_candidates(self, role: str) -> list[tuple[str, str, int | None]]: ...

    async def fault_claim(self, rule_id: str) -> bool: ...

    async def fault_delete(self, role: str, rule_id: str) -> bool: ...

    async def calls_enter(self, role: str, limit: int) -> bool: ...

    async def calls_leave(self, role: str) -> None: ...

    async def calls_clear(self, role: str) -> None: ...

    async def modes_get(self, role: str) -> dict[str, Any] | None: ...

    async def modes_set(self, role: str, modes: dict[str, Any]) -> None: ...

    async def journal_add_many(self, records: Sequence[JournalRecord]) -> None: ...

    async def journal(
        self,
        role: str,
        *,
        operation: str | None = None,
        limit: int = 100,
        directions: Collection[str] | None = None,
    ) -> list[JournalEntry]:
        """Newest first; only entries of `directions` when given (a mock's own: inbound and
        outbound; a proxy's on the same store: proxy)."""
        ...


def open_store(
    db: str, *, journal_limit: int = 10_000, busy_timeout: float = 5.0, reachable_later: bool = False
) -> Storage:
    """The store at `db`: a `postgresql://` URL (PostgresStore) or a SQLite path or `:memory:` (Store).

    ConfigError, in one line, when the PostgreSQL extra is not installed; StoreError when the
    database cannot be reached, unless `reachable_later` (a mock's worker: it answers -7 meanwhile,
    and a SQLite file that cannot be opened is opened when it can be)."""
    if not is_database_url(db):
        from mpesa_atm.mocks.store import Store

        return Store(db, journal_limit=journal_limit, busy_timeout=busy_timeout, open_later=reachable_later)
    try:
        from mpesa_atm.mocks.pg_store import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"--db {database_label(db)} needs PostgreSQL's driver ({exc.name} is not installed):"
            " pip install 'mpesa-atm-harness[postgres]'"
        ) from exc
    return PostgresStore(
        db, journal_limit=journal_limit, busy_timeout=busy_timeout, reachable_later=reachable_later
    )
