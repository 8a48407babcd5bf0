"""The journal files: bounded on disk and in what a read shows, ordered and whole across the processes
that append to them, cleared by a reset from any of them."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from mpesa_atm.mocks.records import JournalEntry, JournalRecord
from mpesa_atm.mocks.store import Store


def record(name: str, role: str = "bank", operation: str = "token_generation") -> JournalRecord:
    request = json.dumps({"input_TransactionID": name, "pad": "x" * 100})
    return JournalRecord(role, "inbound", operation, "POST", "/token-generation", 200, request, "{}", 1.0)


def append(store: Store, *records: JournalRecord) -> None:
    asyncio.run(store.journal_add_many(records))


def read(store: Store, role: str = "bank", **options: Any) -> list[JournalEntry]:
    return asyncio.run(store.journal(role, **options))


def shown(store: Store, role: str = "bank", **options: Any) -> list[str]:
    return [entry.request["input_TransactionID"] for entry in read(store, role, limit=1000, **options)]


def lines_on_disk(store: Store, role: str) -> int:
    files = [Path(path) for path in store._journal.paths(role)]
    return sum(file.read_bytes().count(b"\n") for file in files if file.exists())


@pytest.mark.parametrize("path", ["journal.sqlite3", ":memory:"])
def test_a_read_shows_the_newest_entries_up_to_the_limit_and_the_disk_holds_at_most_twice_that(
    tmp_path, path
):
    store = Store(path if path == ":memory:" else str(tmp_path / path), journal_limit=30)
    try:
        for i in range(100):
            append(store, record(f"T{i}"))
            assert shown(store) == [f"T{n}" for n in range(i, max(i - 30, -1), -1)]
            if path != ":memory:":
                assert lines_on_disk(store, "bank") <= 60
        assert shown(store, operation="token_generation")[:2] == ["T99", "T98"]
        assert shown(store, operation="token_reversal") == []
        assert [e.request["input_TransactionID"] for e in read(store, limit=2)] == ["T99", "T98"]
        assert shown(store, "ipg") == []
    finally:
        store.close()


def test_workers_appending_in_turn_keep_one_order_through_new_files(tmp_path):
    """Two stores on one file are two workers: one starts a new file, the other must write to it."""
    path = str(tmp_path / "shared.sqlite3")
    first, second = Store(path, journal_limit=7), Store(path, journal_limit=7)
    try:
        for i in range(40):
            append(first if i % 3 else second, record(f"T{i}"))
        expected = [f"T{n}" for n in range(39, 32, -1)]
        assert shown(first) == shown(second) == expected
        ids = [entry.id for entry in read(first, limit=1000)]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
        assert lines_on_disk(first, "bank") <= 14
    finally:
        first.close()
        second.close()


def test_a_reset_by_one_worker_clears_the_journal_the_other_appends_to(tmp_path):
    path = str(tmp_path / "reset.sqlite3")
    first, second = Store(path), Store(path)
    try:
        append(first, record("before"), record("other", role="ipg"))
        asyncio.run(second.reset("bank"))
        append(first, record("after"))
        assert shown(second) == ["after"]
        assert shown(first, "ipg") == ["other"]  # the other role's journal stays
    finally:
        first.close()
        second.close()


def test_a_torn_line_is_cut_off_before_the_next_append(tmp_path):
    """A power cut (or a cut-back the disk failed) can leave half a line: the next append cuts it
    off first, so that no entry continues it."""
    store = Store(str(tmp_path / "torn.sqlite3"))
    try:
        append(store, record("whole"))
        with open(store._journal.paths("bank")[0], "ab") as file:
            file.write(b'{"id": 99, "at": "2026-')
        append(store, record("after the torn line"), record("next"))
        assert shown(store) == ["next", "after the torn line", "whole"]
    finally:
        store.close()


def test_a_torn_last_line_is_skipped_when_read(tmp_path):
    """Half a line at the end, no append after it yet: the reader skips it."""
    store = Store(str(tmp_path / "torn.sqlite3"))
    try:
        append(store, record("whole"))
        with open(store._journal.paths("bank")[0], "ab") as file:
            file.write(b'{"id": 99, "at": "2026-')
        assert shown(store) == ["whole"]
    finally:
        store.close()


def test_a_store_opened_again_carries_on_numbering_and_reading(tmp_path):
    path = str(tmp_path / "again.sqlite3")
    store = Store(path)
    append(store, record("first"))
    store.close()
    store = Store(path)
    try:
        append(store, record("second"))
        entries = read(store)
        assert [e.request["input_TransactionID"] for e in entries] == ["second", "first"]
        assert entries[0].id > entries[1].id
    finally:
        store.close()


def _append_many(path: str, name: str, count: int) -> None:
    store = Store(path, journal_limit=20_000)

    async def one_by_one() -> None:
        for i in range(count):
            await store.journal_add_many([record(f"{name}{i}")])

    try:
        asyncio.run(one_by_one())
    finally:
        store.close()


def test_processes_appending_at_once_get_distinct_ids_in_file_order(tmp_path):
    """Workers append in turns on the journal's lock: no id is given twice, none is out of order."""
    path = str(tmp_path / "racing.sqlite3")
    Store(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, name, 5000)) for name in "AB"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = Store(path, journal_limit=20_000)
    try:
        entries = read(store, limit=20_000)
        ids = [entry.id for entry in entries]
        assert len(entries) == 10_000
        assert ids == sorted(set(ids), reverse=True)
        for name in "AB":  # each worker's own entries in the order it wrote them
            names = [entry.request["input_TransactionID"] for entry in reversed(entries)]
            assert [written for written in names if written.startswith(name)] == [
                f"{name}{i}" for i in range(5000)
            ]
    finally:
        store.close()
