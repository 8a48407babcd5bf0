"""The store under sustained writes: the WAL is copied back and started over (it does not grow without
bound), a writer that cannot get the lock gives up after the busy timeout instead of hanging, and the
writes of one turn share a transaction."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from typing import Any

import pytest

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.coordination import WriterLock
from mpesa_atm.mocks.records import BankToken, JournalRecord
from mpesa_atm.mocks.store import Store
from mpesa_atm.mocks.wal import Checkpointer, while_locked
from tests.fixtures.servers import wait_for


def journal_one(store: Store, i: int) -> None:
    record = JournalRecord(
        role="bank",
        direction="inbound",
        operation="token_generation",
        method="POST",
        url="/token-generation",
        status=200,
        request=json.dumps({"input_TransactionID": f"T{i}", "pad": "x" * 300}),
        response=json.dumps({"output_ResponseCode": "0"}),
        duration_ms=1.0,
    )
    asyncio.run(store.journal_add_many([record]))


def test_wal_is_started_over_under_sustained_writes(tmp_path):
    path = tmp_path / "busy.sqlite3"
    store = Store(str(path))
    wal = tmp_path / "busy.sqlite3-wal"
    checkpointer = store._checkpointer
    assert checkpointer is not None
    largest = 0
    try:
        for i in range(8000):  # about 100 MB of WAL frames if it were never started over
            token = BankToken(f"{i:032d}", f"TX{i}", "243843330333", "200.00", "CDF", "x" * 300, "x")
            with store.transaction() as tx:
                tx.add_bank_token(token, 0.0)
            if checkpointer.commits % checkpointer.every == 0:
                # The commit woke the checkpoint thread: its pass ends before the next writes, as a
                # server's pauses between requests let it.
                woken = checkpointer.commits // checkpointer.every
                wait_for(lambda: checkpointer.passes >= woken, "the checkpoint pass")  # noqa: B023
            if i % 100 == 0:
                largest = max(largest, wal.stat().st_size)
    finally:
        store.close()
    assert largest < 40 * 1024 * 1024, f"the WAL reached {largest} bytes"  # restarted past 16 MiB


def add_token(store: Store, i: int) -> None:
    with store.transaction() as tx:
        tx.add_bank_token(BankToken(f"{i:032d}", f"TX{i}", "243843330333", "200.00", "CDF", None, "x"), 0.0)


def written(store: Store) -> tuple[list[str], list[str]]:
    """(journalled TransactionIDs, token TransactionIDs), oldest first."""
    entries = asyncio.run(store.journal("bank"))
    journalled = [entry.request["input_TransactionID"] for entry in reversed(entries)]
    tokens = [row[0] for row in store._db.execute("SELECT transaction_id FROM bank_tokens ORDER BY 1")]
    return journalled, tokens


@pytest.mark.parametrize(
    ("lock", "write", "other", "expected"),
    [
        (".lock", add_token, journal_one, (["T1"], ["TX2"])),
        (".journal.lock", journal_one, add_token, (["T2"], ["TX1"])),
    ],
)
def test_writer_gives_up_after_the_busy_timeout_when_its_lock_is_held(tmp_path, lock, write, other, expected):
    fcntl = pytest.importorskip("fcntl")  # the lock files are Unix only
    path = tmp_path / "held.sqlite3"
    store = Store(str(path), busy_timeout=0.3)
    holder = os.open(f"{path}{lock}", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another writer, stuck mid-transaction or mid-append
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusy):
            write(store, 1)
        assert 0.3 <= time.monotonic() - started < 2
        other(store, 1)  # the other lock is free: its writes go on meanwhile
    finally:
        os.close(holder)
    write(store, 2)  # released: writes go through again
    assert written(store) == expected
    store.close()


def test_a_token_generation_repeated_by_another_process_store_adds_one_token(tmp_path):
    path = str(tmp_path / "tokens.sqlite3")
    first, second = Store(path), Store(path)
    try:
        token = BankToken("a" * 32, "TX1", "243843330333", "200.00", "CDF", None, "20190611 223210")
        with first.transaction() as tx:
            assert tx.add_bank_token_once(token, 0.0) is None
        with second.transaction() as tx:
            again = tx.add_bank_token_once(BankToken("b" * 32, *[*vars(token).values()][1:]), 1.0)
        assert again == token  # the first one, whichever store asks
    finally:
        first.close()
        second.close()


def test_writes_queued_in_one_turn_share_one_transaction_and_are_undone_alone(tmp_path):
    store = Store(str(tmp_path / "turn.sqlite3"))
    commits: list[str] = []
    store._db.set_trace_callback(
        lambda statement: commits.append(statement) if statement == "COMMIT" else None
    )

    def token(n: int) -> BankToken:
        return BankToken(
            f"{n:032d}", "SAME" if n < 3 else f"TX{n}", "243843330333", "200.00", "CDF", None, "x"
        )

    def broken(tx: Any) -> None:
        tx.add_bank_token(token(9), 0.0)  # undone with the rest of this work
        raise ValueError("this work alone")

    entry = JournalRecord(
        "bank", "inbound", "token_generation", "POST", "/token-generation", 200, "{}", "{}", 1.0
    )

    async def turn() -> list[Any]:
        futures = [
            store.in_next_write(lambda tx, n=n: tx.add_bank_token_once(token(n), 0.0)) for n in range(5)
        ]
        futures.insert(2, store.in_next_write(broken))
        futures += [store.journal_in_next_write(entry), store.journal_in_next_write(entry)]
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        first, second, failed, third, fourth, fifth, *journalled = asyncio.run(turn())
        assert commits == ["COMMIT"]
        assert journalled == [None, None]
        assert len(asyncio.run(store.journal("bank"))) == 2
        assert first is None and fourth is None and fifth is None  # added
        assert second == third == token(0)  # the same TransactionID, answered with the first token
        assert isinstance(failed, ValueError)
        (rows,) = store._db.execute("SELECT COUNT(*) FROM bank_tokens").fetchone()
        assert rows == 3
    finally:
        store.close()


def test_token_writes_queued_in_one_turn_all_fail_when_the_store_stays_locked(tmp_path):
    path = str(tmp_path / "locked.sqlite3")
    store = Store(path, busy_timeout=0.1)
    holder = Store(path)
    lock = holder._locks.database
    assert isinstance(lock, WriterLock)
    lock.acquire()
    try:

        async def turn() -> list[Any]:
            entry = JournalRecord("bank", "inbound", None, "POST", "/", 200, "{}", "{}", 1.0)
            futures = [
                store.in_next_write(lambda tx: tx.add_bank_token_once(BankToken(*"abcdefg"), 0.0)),
                store.in_next_write(lambda tx: tx.add_bank_token_once(BankToken(*"hijklmn"), 0.0)),
                store.journal_in_next_write(entry),
            ]
            return await asyncio.gather(*futures, return_exceptions=True)

        # The journal has a lock of its own: its entry is written all the same.
        assert [type(outcome) for outcome in asyncio.run(turn())] == [StoreBusy, StoreBusy, type(None)]
        assert len(asyncio.run(store.journal("bank"))) == 1
    finally:
        lock.release()
        holder.close()
        store.close()


def test_opening_a_new_file_is_tried_again_while_another_process_makes_it_wal():
    """Workers opening a new file at once race to set WAL mode; the loser may hear "locked" at once."""
    answers = iter([sqlite3.OperationalError("database is locked")] * 3 + [None])

    def action() -> None:
        answer = next(answers)
        if answer is not None:
            raise answer

    while_locked(action, timeout=1)
    assert next(answers, "spent") == "spent"

    def broken() -> None:
        raise sqlite3.OperationalError("no such table: x")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):  # other errors at once
        while_locked(broken, timeout=1)


def test_the_busy_timeout_in_seconds_is_sqlites_too(tmp_path):
    store = Store(str(tmp_path / "timeout.sqlite3"), busy_timeout=0.25)
    try:
        assert store._db.execute("PRAGMA busy_timeout").fetchone() == (250,)
    finally:
        store.close()


def test_writes_queued_on_a_closed_store_fail_instead_of_waiting_for_ever(tmp_path):
    store = Store(str(tmp_path / "closed.sqlite3"))
    store.close()  # the app's lifespan ended while a call was still under way

    async def turn() -> list[Any]:
        entry = JournalRecord("bank", "inbound", None, "POST", "/", 200, "{}", "{}", 1.0)
        futures = [
            store.in_next_write(lambda tx: tx.add_bank_token_once(BankToken(*"abcdefg"), 0.0)),
            store.journal_in_next_write(entry),
        ]
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)

    assert [isinstance(outcome, Exception) for outcome in asyncio.run(turn())] == [True, True]


def test_calls_under_way_are_counted_across_processes_and_a_fresh_count_forgets_them(tmp_path):
    path = str(tmp_path / "shared.sqlite3")
    first, second = Store(path), Store(path)  # as two workers' stores: the counter is in the lock file

    async def counted() -> None:
        assert await first.calls_enter("ipg", 2) and await second.calls_enter("ipg", 2)
        assert not await first.calls_enter("ipg", 2)  # the limit holds across both
        assert await second.calls_enter("bank", 1)  # each role counts its own calls
        # A worker killed mid-call never leaves: a worker's start or a change of modes forgets it.
        await second.calls_clear("ipg")
        assert await first.calls_enter("ipg", 1)
        for _ in range(3):  # the ends of calls counted before: never below 0
            await first.calls_leave("ipg")
        assert await first.calls_enter("ipg", 1)
        assert not await first.calls_enter("bank", 1)
        await first.reset("bank")  # so does a reset
        assert await first.calls_enter("bank", 1)

    try:
        asyncio.run(counted())
    finally:
        first.close()
        second.close()


def test_a_checkpoint_that_fails_otherwise_than_busy_is_logged_once_and_the_next_pass_runs(
    tmp_path, monkeypatch, caplog
):
    (tmp_path / "failing.sqlite3").touch()  # a pass opens the file, never makes it (a store does)
    checkpointer = Checkpointer(str(tmp_path / "failing.sqlite3"), timeout=1, every=1)
    failures = iter([sqlite3.DatabaseError("database disk image is malformed")] * 2 + [StoreBusy("held")])

    def failing(db: sqlite3.Connection, lock: WriterLock) -> None:
        raise next(failures)

    monkeypatch.setattr(Checkpointer, "_checkpoint", staticmethod(failing))
    try:
        for woken in range(1, 4):
            checkpointer.committed()
            wait_for(lambda: checkpointer.passes >= woken, "the checkpoint pass")  # noqa: B023
    finally:
        checkpointer.stop()
    logged = [record for record in caplog.records if record.name == "mpesa_atm.mocks"]
    assert [record.getMessage() for record in logged] == [
        f"the WAL's checkpoint of {tmp_path / 'failing.sqlite3'} failed (logged once):"
        " database disk image is malformed"
    ]
