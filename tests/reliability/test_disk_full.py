"""A full disk is the machine's trouble, not the mock's bug: the bank mock's store on a small tmpfs,
filled while unique Token Generations keep coming, answers each one in its envelope (0 or -7, never
a 5xx); once space is back it answers 0 again, and every call it answered 0 is in the store and in
the journal, whose every line parses, before and after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.journal import Journal
from mpesa_atm.mocks.records import BankToken, JournalRecord
from mpesa_atm.mocks.statements import Transaction
from mpesa_atm.mocks.store import Store
from tests.fixtures.servers import Launcher

pytestmark = pytest.mark.network

MSISDN = "243843330333"
CALLERS = 8  # concurrent callers: the worker's turns batch several writes, as under load
# Calls while the disk is full and beyond: bounded so that the test stays under ~20 s.
MAX_CALLS = 3000
CALLS_WHILE_FULL = 300  # after the first -7
CALLS_AFTER = 100  # after space is back
FREE_LEFT = 160 * 1024  # bytes the filler leaves free on the tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, unmounted when the test ends. Skipped with the reason when it cannot be
    mounted (not root, no mount in a container), except on CI (CI=true), which runs as root."""
    on_ci = os.environ.get("CI") == "true"
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 and not on_ci:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        if on_ci:
            pytest.fail(f"CI=true, yet the tmpfs could not be mounted: {mounted.stderr.strip()}")
        pytest.skip(f"a tmpfs could not be mounted: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _generation(i: int) -> dict[str, str]:
    return {
        "input_CustomerMSISDN": MSISDN,
        "input_Amount": "150",
        "input_Currency": "USD",
        "input_TransactionID": f"FULL{i:06d}",
    }


def _fill(folder: Path) -> Path:
    """A file that takes the tmpfs's space but FREE_LEFT bytes; removing it gives the space back."""
    stats = os.statvfs(folder)
    filler = folder / "filler"
    size = stats.f_bavail * stats.f_frsize - FREE_LEFT
    with filler.open("wb") as out:
        out.write(b"\0" * max(size, 0))
    return filler


async def _calls(
    url: str, ids: Iterator[int], answers: dict[int, httpx.Response], stop_after_busy: int
) -> None:
    """Sends unique Token Generations from CALLERS callers until `stop_after_busy` calls have been sent
    after the first -7 (or MAX_CALLS in all)."""
    busy_at: list[int] = []

    async def caller(client: httpx.AsyncClient) -> None:
        for i in ids:
            if busy_at and i > busy_at[0] + stop_after_busy:
                return
            answer = await client.post(f"{url}/token-generation", json=_generation(i))
            answers[i] = answer
            if answer.status_code < 500 and answer.json().get("output_ResponseCode") == "-7" and not busy_at:
                busy_at.append(i)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(caller(client) for _ in range(CALLERS)))


def _code(answer: httpx.Response) -> str:
    """The answer's output_ResponseCode; AssertionError when it is a 5xx or not in the envelope."""
    assert answer.status_code < 500, f"{answer.status_code} {answer.text}"
    body = answer.json()
    assert body.get("output_ResponseCode") in ("0", "-7"), body
    return body["output_ResponseCode"]


def _journalled(db: Path) -> set[str]:
    """The transaction ids of the bank journal's Token Generations answered 0; every line must parse."""
    found: set[str] = set()
    for path in (Path(f"{db}.journal-bank.1.jsonl"), Path(f"{db}.journal-bank.jsonl")):
        if not path.exists():
            continue
        for number, line in enumerate(path.read_bytes().split(b"\n")[:-1], 1):
            try:
                entry = json.loads(line)
            except ValueError:
                pytest.fail(f"{path.name} line {number} does not parse: {line[:200]!r}")
            response = (
                json.loads(entry["response"]) if isinstance(entry["response"], str) else entry["response"]
            )
            request = json.loads(entry["request"]) if isinstance(entry["request"], str) else entry["request"]
            if isinstance(response, dict) and response.get("output_ResponseCode") == "0":
                found.add(request["input_TransactionID"])
        assert path.read_bytes().endswith(b"\n") or not path.read_bytes(), f"{path.name} ends mid-line"
    return found


def _parsed(text: object) -> object:
    return json.loads(text) if isinstance(text, str) else text


def _stored(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT transaction_id FROM bank_tokens")}


def test_full_disk_answers_minus_7_and_loses_nothing_acknowledged(small_disk: Path) -> None:
    launcher = Launcher(small_disk.parent)
    db = small_disk / "mock.sqlite3"
    try:
        served = launcher("--workers", "2", role="bank", db_path=db)
        filler = _fill(small_disk)
        answers: dict[int, httpx.Response] = {}
        ids = iter(range(MAX_CALLS))
        asyncio.run(_calls(served.bank_url, ids, answers, CALLS_WHILE_FULL))
        codes = {i: _code(answer) for i, answer in answers.items()}
        assert "-7" in codes.values(), "the disk never filled: the test tested nothing"
        assert "0" in codes.values()

        # The control API's writes: 503 with Retry-After, as for a database out of reach.
        rule = {"operation": "token_generation", "response_code": "-1", "description": "d" * 200, "times": 1}
        control = httpx.post(f"{served.bank_url}/_harness/faults", json=rule)
        assert (control.status_code, control.headers.get("retry-after")) == (503, "1"), control.text

        filler.unlink()  # space is back
        after: dict[int, httpx.Response] = {}
        asyncio.run(
            _calls(served.bank_url, iter(range(MAX_CALLS, MAX_CALLS + CALLS_AFTER)), after, CALLS_AFTER)
        )
        codes.update({i: _code(answer) for i, answer in after.items()})
        assert all(codes[i] == "0" for i in range(MAX_CALLS + CALLS_AFTER - 10, MAX_CALLS + CALLS_AFTER)), (
            "still not answering 0 with space back"
        )

        counted = [code for code in codes.values()]
        print(f"disk full: {counted.count('0')} answered 0, {counted.count('-7')} -7, of {len(counted)}")
        acknowledged = {_generation(i)["input_TransactionID"] for i, code in codes.items() if code == "0"}
        assert acknowledged - _stored(db) == set(), "answered 0, not in the store"
        assert acknowledged - _journalled(db) == set(), "answered 0, not in the journal"
        assert served.log().count("Traceback") < 10, "a traceback a call"

        served.stop()
        restarted = launcher("--workers", "2", role="bank", db_path=db)
        entries = httpx.get(f"{restarted.bank_url}/_harness/journal", params={"limit": 10_000}).json()[
            "entries"
        ]
        listed = {
            e["request"]["input_TransactionID"]
            for e in entries
            if e["response"]["output_ResponseCode"] == "0"
        }
        assert acknowledged - listed == set(), "answered 0, not in the journal after a restart"
        assert acknowledged - _stored(db) == set(), "answered 0, not in the store after a restart"
    finally:
        launcher.stop_all()


# Without root: SQLite's max_page_count makes the database "full" (SQLITE_FULL), and a write that
# fails half way stands for a disk that fills during the journal's append.


def _token(n: int) -> BankToken:
    return BankToken(f"{n:032d}", f"TX{n}", MSISDN, "200.00", "CDF", None, "x")


@pytest.mark.parametrize(
    ("trouble", "back", "message"),
    [
        # not one page more: SQLITE_FULL
        ("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1000000", "database or disk is full"),
        # SQLITE_READONLY, as a file that cannot be written gives
        ("PRAGMA query_only = 1", "PRAGMA query_only = 0", "attempt to write a readonly database"),
    ],
)
def test_a_store_that_cannot_be_written_answers_store_busy_and_says_so_once(
    tmp_path, caplog, trouble, back, message
):
    store = Store(str(tmp_path / "full.sqlite3"))
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(trouble.format(pages=pages))

    def work(n: int) -> Callable[[Transaction], None]:
        def add(tx: Transaction) -> None:  # more than a page of rows: the database must grow
            for k in range(100):
                tx.add_bank_token_once(_token(n * 100 + k), 0.0)

        return add

    async def turn(first: int) -> list[Any]:
        works = [store.in_next_write(work(n)) for n in range(first, first + 3)]
        return await asyncio.gather(*works, return_exceptions=True)

    try:
        for first in (0, 3):  # two turns of three works, each failing whole
            assert [type(outcome) for outcome in asyncio.run(turn(first))] == [StoreBusy] * 3
        logged = [r.getMessage() for r in caplog.records if r.name == "mpesa_atm.mocks"]
        assert logged == [f"writing to {tmp_path / 'full.sqlite3'} failed (logged once): {message}"]
        assert not any(r.exc_info for r in caplog.records), "a traceback for the disk's trouble"
        store._db.execute(back)  # space is back, the file writable
        assert asyncio.run(turn(6)) == [None] * 3
        (rows,) = store._db.execute("SELECT COUNT(*) FROM bank_tokens").fetchone()
        assert rows == 300  # the turn after, whole; nothing of the failed ones
    finally:
        store.close()


def test_a_journal_append_the_disk_cannot_complete_leaves_no_half_line(tmp_path, monkeypatch, caplog):
    path = tmp_path / "torn.sqlite3"
    store = Store(str(path))
    real_write = os.write
    calls = iter(range(2))

    def filling(descriptor: int, data: Any) -> int:
        if next(calls, None) == 0:
            return real_write(descriptor, bytes(data[: len(data) // 2]))  # half, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    def record(i: int) -> JournalRecord:
        body = json.dumps({"input_TransactionID": f"T{i}"})
        return JournalRecord("bank", "inbound", "token_generation", "POST", "/", 200, body, "{}", 1.0)

    try:
        asyncio.run(store.journal_add_many([record(0)]))
        monkeypatch.setattr(os, "write", filling)
        for i in (1, 2):
            with pytest.raises(StoreBusy):
                asyncio.run(store.journal_add_many([record(i)]))
        monkeypatch.undo()
        asyncio.run(store.journal_add_many([record(3)]))
        lines = Path(f"{path}.journal-bank.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b""
        entries = [json.loads(line) for line in lines[:-1]]  # each line parses
        assert [(e["id"], json.loads(e["request"])["input_TransactionID"]) for e in entries] == [
            (1, "T0"),
            (2, "T3"),
        ]
        assert store.journal_lost == 0
        assert "the journal takes entries again; 2 could not be written meanwhile" in caplog.text
    finally:
        store.close()


def test_an_answer_the_journal_cannot_take_goes_out_as_minus_7(mocks, monkeypatch):
    """Every answer sent is in the journal: one whose entry cannot be written is not sent."""

    def full(self: Any, records: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Journal, "append", full)
    busy = mocks.bank.post("/token-generation", json=_generation(1))
    assert (busy.status_code, busy.json()["output_ResponseCode"]) == (200, "-7")
    monkeypatch.undo()
    assert mocks.bank.get("/_harness/journal").json()["entries"] == []
    # Its token was committed before the journal failed: the same call again is a repeat (-3), with
    # the token's reference, as docs/reliability.md says.
    again = mocks.bank.post("/token-generation", json=_generation(1)).json()
    assert again["output_ResponseCode"] == "-3"
    (entry,) = mocks.bank.get("/_harness/journal").json()["entries"]
    assert entry["response"] == again


def test_a_cut_back_that_fails_too_is_made_before_the_next_append(tmp_path, monkeypatch):
    """The disk fails the append half way, then its cut-back: the next append (this process's or
    another's) cuts the half line off first, so that no entry continues it."""
    path = tmp_path / "torn.sqlite3"
    store = Store(str(path))
    real_write = os.write

    def half(descriptor: int, data: Any) -> int:
        monkeypatch.setattr(os, "write", failing)
        return real_write(descriptor, bytes(data[: len(data) // 2]))

    def failing(descriptor: int, data: Any) -> int:
        raise OSError(errno.EIO, "Input/output error")

    def no_truncate(descriptor: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def record(i: int) -> JournalRecord:
        body = json.dumps({"input_TransactionID": f"T{i}"})
        return JournalRecord("bank", "inbound", "token_generation", "POST", "/", 200, body, "{}", 1.0)

    journal = Path(f"{path}.journal-bank.jsonl")
    try:
        asyncio.run(store.journal_add_many([record(0)]))
        monkeypatch.setattr(os, "write", half)
        monkeypatch.setattr(os, "ftruncate", no_truncate)
        with pytest.raises(StoreBusy):
            asyncio.run(store.journal_add_many([record(1)]))
        assert not journal.read_bytes().endswith(b"\n")  # the half line is there
        monkeypatch.undo()
        other = Store(str(path))  # another worker appends next
        try:
            asyncio.run(other.journal_add_many([record(2)]))
        finally:
            other.close()
        asyncio.run(store.journal_add_many([record(3)]))
        lines = journal.read_bytes().split(b"\n")
        assert lines[-1] == b""
        entries = [json.loads(line) for line in lines[:-1]]  # each line parses
        assert [json.loads(e["request"])["input_TransactionID"] for e in entries] == ["T0", "T2", "T3"]
    finally:
        store.close()


def test_the_lock_files_counters_are_allocated_and_a_full_disk_at_start_is_store_busy(tmp_path, monkeypatch):
    """The counters every worker maps (mocks/coordination.py) have their block on disk: a sparse
    page written through the mapping on a full disk would be SIGBUS for the worker."""
    Store(str(tmp_path / "mock.sqlite3")).close()
    assert os.stat(tmp_path / "mock.sqlite3.lock").st_blocks > 0

    def full(descriptor: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(StoreBusy, match="No space left on device"):
        Store(str(tmp_path / "other.sqlite3"))
