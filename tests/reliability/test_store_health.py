"""Health tells the truth and the workers heal themselves: a SQLite store that cannot be written
(its files made immutable, the workers killed and started again meanwhile) is answered -7 and
/_harness/health 503, then 0 and 200 within seconds of the files being writable, with no restart;
a store file deleted or moved away under a running mock takes nothing more, and says so."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from mpesa_atm.errors import StoreBusy
from mpesa_atm.mocks.records import BankToken
from mpesa_atm.mocks.store import Store
from tests.fixtures.servers import Served, wait_for

MSISDN = "243843330333"
HEAL_SECONDS = 15  # the bound: 0 again within this of the cause being gone


def _generation(transaction_id: str) -> dict[str, str]:
    return {
        "input_CustomerMSISDN": MSISDN,
        "input_Amount": "150",
        "input_Currency": "USD",
        "input_TransactionID": transaction_id,
    }


async def _post_all(url: str, ids: list[str]) -> dict[str, str]:
    """Each Token Generation's output_ResponseCode, sent 4 at a time on connections of their own (so
    that both workers get some); AssertionError for a 5xx or an answer outside the envelope."""
    codes: dict[str, str] = {}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for start in range(0, len(ids), 4):
            batch = ids[start : start + 4]
            answers = await asyncio.gather(
                *(client.post(f"{url}/token-generation", json=_generation(i)) for i in batch)
            )
            for transaction_id, answer in zip(batch, answers, strict=True):
                assert answer.status_code < 500, f"{answer.status_code} {answer.text}"
                codes[transaction_id] = answer.json()["output_ResponseCode"]
    return codes


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{uuid.uuid4().hex[:12]}" for _ in range(count)]


def _healths(url: str, count: int = 6) -> list[httpx.Response]:
    """`count` asks of /_harness/health, each on a connection of its own (either worker answers)."""
    return [httpx.get(f"{url}/_harness/health", timeout=10) for _ in range(count)]


def _stored(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT transaction_id FROM bank_tokens")}


def _workers(served: Served) -> set[int]:
    """The uvicorn workers of a one-role `serve` (spawned children; not the resource tracker)."""
    found = set()
    for child in psutil.Process(served.process.pid).children():
        with contextlib.suppress(psutil.ZombieProcess, psutil.NoSuchProcess):  # one just killed
            if "spawn_main" in " ".join(child.cmdline()):
                found.add(child.pid)
    return found


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[list[Path], bool], None]]:
    """`immutable(files, on)`: chattr +i (or -i) on the files that exist. Skipped with the reason
    where chattr cannot make a file immutable (not root, no chattr, a file system without the
    flag), except on CI (CI=true), which runs as root on ext4; the flags are taken off at the end."""
    on_ci = os.environ.get("CI") == "true"
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        tried = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
        reason = tried.stderr.strip() or f"chattr exited {tried.returncode}"
    except FileNotFoundError:
        tried, reason = None, "no chattr (e2fsprogs)"
    if tried is None or tried.returncode != 0:
        if on_ci:
            pytest.fail(f"CI=true, yet chattr +i failed: {reason}")
        pytest.skip(f"files cannot be made immutable here: {reason}")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    flagged: set[Path] = set()

    def chattr(files: list[Path], on: bool) -> None:
        present = [str(f) for f in files if f.exists()]
        subprocess.run(["chattr", "+i" if on else "-i", *present], check=True)
        flagged.update(Path(f) for f in present) if on else flagged.difference_update(map(Path, present))

    yield chattr
    if flagged:  # else tmp_path could not be removed
        subprocess.run(["chattr", "-i", *map(str, flagged)], check=False)


@pytest.mark.network
def test_immutable_files_with_workers_restarted_answer_minus_7_then_0_once_writable(
    serve, tmp_path, immutable
):
    db = tmp_path / "mock.sqlite3"
    served = serve("--workers", "2", role="bank", db_path=db)
    url = served.bank_url
    wait_for(lambda: len(_workers(served)) == 2, "two workers")
    before = asyncio.run(_post_all(url, _ids("BEFORE", 8)))
    assert set(before.values()) == {"0"}
    files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]

    immutable(files, True)
    first = _workers(served)
    for pid in first:  # killed meanwhile: their replacements open the files while immutable
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(_workers(served) - first) == 2, "two new workers", timeout=15)
    wait_for(lambda: served.process.poll() is not None or "cannot be written" in served.log(), "workers up")
    assert served.process.poll() is None, f"the mock stopped:\n{served.log()}"

    meanwhile = asyncio.run(_post_all(url, _ids("IMMUTABLE", 8)))
    assert set(meanwhile.values()) == {"-7"}, meanwhile
    for health in _healths(url):
        assert (health.status_code, health.headers.get("retry-after")) == (503, "1"), health.text
        assert "cannot be written" in health.json()["detail"], health.json()

    immutable(files, False)
    writable_at = time.monotonic()
    healed: list[dict[str, str]] = []

    def serving() -> bool:
        codes = asyncio.run(_post_all(url, _ids("AFTER", 8)))
        healed.append(codes)
        return set(codes.values()) == {"0"} and all(h.status_code == 200 for h in _healths(url))

    wait_for(serving, "0 and health 200 from both workers", timeout=HEAL_SECONDS)
    took = time.monotonic() - writable_at
    print(f"immutable files: 0 and health 200 again {took:.1f} s after chattr -i")
    acknowledged = {i for codes in [before, meanwhile, *healed] for i, code in codes.items() if code == "0"}
    assert acknowledged - _stored(db) == set(), "answered 0, not in the store"
    assert served.log().count("Traceback") == 0, served.log()


@pytest.mark.network
def test_a_deleted_store_file_acknowledges_nothing_and_health_says_why(serve, tmp_path):
    db = tmp_path / "mock.sqlite3"
    served = serve("--workers", "2", role="bank", db_path=db)
    url = served.bank_url
    before = asyncio.run(_post_all(url, _ids("BEFORE", 8)))
    assert set(before.values()) == {"0"}

    db.unlink()
    after = asyncio.run(_post_all(url, _ids("DELETED", 16)))
    health = _healths(url)
    for answer in health:
        assert (answer.status_code, answer.headers.get("retry-after")) == (503, "1"), answer.text
        assert "was deleted" in answer.json()["detail"], answer.json()
    served.stop()

    wal = Path(f"{db}-wal")
    if wal.exists():  # SQLite keeps the WAL of a file deleted under it: `serve` makes no store beside it
        refused = subprocess.run(
            [sys.executable, "-m", "mpesa_atm", "serve", "bank", "--port", "0", "--db", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2, refused.stderr
        assert "its -wal is still there" in refused.stderr and len(refused.stderr.splitlines()) == 1
        wal.unlink()  # as the line says
        Path(f"{db}-shm").unlink(missing_ok=True)
    restarted = serve(role="bank", db_path=db)  # a fresh store at the path
    assert httpx.get(f"{restarted.bank_url}/_harness/health", timeout=10).status_code == 200
    acknowledged = {i for i, code in after.items() if code == "0"}
    assert acknowledged - _stored(db) == set(), "answered 0 after the deletion, not found after a restart"
    assert set(after.values()) == {"-7"}, after  # nothing is written into a file that is gone


@pytest.mark.network
def test_a_store_file_moved_away_and_back_is_refused_meanwhile_and_served_after(serve, tmp_path):
    db = tmp_path / "mock.sqlite3"
    served = serve("--workers", "2", role="bank", db_path=db)
    url = served.bank_url
    assert set(asyncio.run(_post_all(url, _ids("BEFORE", 4))).values()) == {"0"}

    aside = tmp_path / "aside.sqlite3"
    db.rename(aside)
    db.write_bytes(b"")  # another file at the path: replaced
    assert set(asyncio.run(_post_all(url, _ids("REPLACED", 8))).values()) == {"-7"}
    for answer in _healths(url):
        assert answer.status_code == 503 and "was replaced" in answer.json()["detail"], answer.text

    aside.rename(db)  # the same file back: the cause is gone
    # At once, or (a worker whose write met the other file: "disk I/O error") after its connection is
    # opened anew and a write proved, a second apart each (docs/reliability.md).
    wait_for(lambda: all(answer.status_code == 200 for answer in _healths(url)), "health 200", timeout=10)
    back = asyncio.run(_post_all(url, _ids("BACK", 8)))
    assert set(back.values()) == {"0"}
    assert set(back) - _stored(db) == set()


# In process, without root: what the servers above rely on.


def _add(n: int) -> Callable[..., None]:
    return lambda tx: tx.add_bank_token_once(
        BankToken(f"{n:032d}", f"T{n}", MSISDN, "1.00", "CDF", None, "x"), 0.0
    )


def test_a_worker_whose_store_cannot_be_opened_starts_and_opens_it_a_second_later(tmp_path):
    path = tmp_path / "mock.sqlite3"
    path.mkdir()  # SQLite cannot open a folder: "unable to open database file"
    with pytest.raises(sqlite3.OperationalError):
        Store(str(path))  # `serve` itself: one line, exit 2 (serve_store.py)
    store = Store(str(path), open_later=True)  # a worker: it starts
    try:
        with pytest.raises(StoreBusy, match="unable to open"):
            asyncio.run(store.in_next_write(_add(1)))
        assert "unable to open" in (asyncio.run(store.health()) or "")
        path.rmdir()  # the cause is gone...
        with pytest.raises(StoreBusy):  # ...but the next try is a second after the last
            asyncio.run(store.in_next_write(_add(2)))
        time.sleep(1.05)
        asyncio.run(store.in_next_write(_add(3)))
        assert asyncio.run(store.health()) is None
    finally:
        store.close()


def test_reads_outside_a_transaction_answer_the_stores_trouble_as_store_busy(tmp_path):
    store = Store(str(tmp_path / "mock.sqlite3"))
    try:
        assert store._db is not None
        store._db.set_progress_handler(lambda: 1, 1)  # every statement interrupted: OperationalError
        for read in (store.fault_candidates("bank"), store.fault_list("bank"), store.modes_get("bank")):
            with pytest.raises(StoreBusy, match="interrupted"):
                asyncio.run(read)
        with pytest.raises(StoreBusy, match="interrupted"):
            asyncio.run(store.counts("bank"))
        assert asyncio.run(store.health()) == "interrupted"  # until a write succeeds
        store._db.set_progress_handler(None, 1)
        asyncio.run(store.in_next_write(_add(1)))
        assert asyncio.run(store.health()) is None
    finally:
        store.close()


def test_a_deleted_file_takes_no_write_and_health_says_so_until_it_is_back(tmp_path):
    path = tmp_path / "mock.sqlite3"
    store = Store(str(path))
    try:
        asyncio.run(store.in_next_write(_add(1)))
        path.rename(tmp_path / "aside")
        with pytest.raises(StoreBusy, match="was deleted while the mock ran"):
            asyncio.run(store.in_next_write(_add(2)))
        assert "was deleted" in (asyncio.run(store.health()) or "")
        (tmp_path / "aside").rename(path)
        asyncio.run(store.in_next_write(_add(3)))
        assert asyncio.run(store.health()) is None

        def deleted_meanwhile(tx: Any) -> None:  # committed into a file gone by then: answered -7
            _add(4)(tx)
            path.rename(tmp_path / "aside")

        with pytest.raises(StoreBusy, match="was deleted"):
            asyncio.run(store.in_next_write(deleted_meanwhile))
        (tmp_path / "aside").rename(path)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            rows = {row[0] for row in conn.execute("SELECT transaction_id FROM bank_tokens")}
        assert rows == {"T1", "T3", "T4"}  # a -7 may have kept its token, as docs/reliability.md says
    finally:
        store.close()


def test_a_worker_started_after_the_file_was_deleted_makes_no_new_store_beside_its_wal(tmp_path):
    """A new file beside the old one's -wal (still open in the other workers) would read the old
    WAL's pages as its own: the worker refuses, and `serve` says why in one line (StoreError)."""
    path = tmp_path / "mock.sqlite3"
    running = Store(str(path))  # another worker, its -wal open
    try:
        asyncio.run(running.in_next_write(_add(1)))
        path.unlink()
        with pytest.raises(StoreBusy, match="its -wal is still there"):
            Store(str(path))
        late = Store(str(path), open_later=True)
        try:
            with pytest.raises(StoreBusy, match="was deleted, and its -wal is still there"):
                asyncio.run(late.in_next_write(_add(2)))
            assert "its -wal is still there" in (asyncio.run(late.health()) or "")
        finally:
            late.close()
        assert not path.exists()
    finally:
        running.close()
