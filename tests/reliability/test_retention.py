"""Retention (mocks/retention.py): old tokens and transactions leave the store, nothing younger than
the token window or the duplicate horizon does, no acknowledged write is lost while pruning, and a
served store stops growing once retention balances the load."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from mpesa_atm.errors import ConfigError
from mpesa_atm.mocks.retention import Retention
from mpesa_atm.mocks.store import Store
from mpesa_atm.mocks.wal import WAL_SIZE_LIMIT
from mpesa_atm.settings import Settings, load_settings
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.tokens import seed_token


def _prune(settings: Settings, role: str, batch: int = 100) -> int:
    async def run() -> int:
        store = Store(settings.db_path)
        try:
            return await Retention(store, role, settings, batch=batch).prune()  # type: ignore[arg-type]
        finally:
            store.close()

    return asyncio.run(run())


def _count(settings: Settings, table: str) -> int:
    store = Store(settings.db_path)
    try:
        with store.transaction() as tx:
            return tx._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        store.close()


# Settings


def test_retention_shorter_than_the_token_window_is_refused():
    with pytest.raises(ConfigError, match=r"retention_days .* must be at least the token window"):
        Settings(retention=timedelta(days=1))
    assert Settings(token_ttl=timedelta(hours=1), retention=timedelta(hours=1)).retention == timedelta(
        hours=1
    )


def test_retention_days_from_the_config_file_and_the_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("token_ttl_hours = 0.001\nretention_days = 0.5\n")
    assert load_settings(config_file=config, env={}).retention == timedelta(days=0.5)
    env = {"MPESA_ATM_RETENTION_DAYS": "30"}
    assert load_settings(config_file=config, env=env).retention == timedelta(days=30)
    for raw in ("soon", "0", "-1", "nan"):
        with pytest.raises(ConfigError, match="RETENTION_DAYS"):
            load_settings(env={"MPESA_ATM_RETENTION_DAYS": raw})


def test_serve_with_retention_inside_the_token_window_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    done = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "serve", "--db", str(tmp_path / "s.db"), "--retention-days", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "retention_days (1) must be at least the token window" in done.stderr


# What is removed, and what never is


def test_nothing_inside_the_window_or_the_duplicate_horizon_is_removed(make_mocks, settings, clock):
    chosen = settings.replace(token_ttl=timedelta(hours=1), retention=timedelta(hours=2))
    mocks = make_mocks(token_ttl=chosen.token_ttl, retention=chosen.retention)
    seed_token(mocks.ipg)
    first = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION).json()
    assert first["output_ResponseCode"] == "0"
    generated = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert generated["output_ResponseCode"] == "0"

    # At the edge of the horizon: past the token window, not yet past retention.
    clock.advance(hours=2)
    assert _prune(chosen, "ipg") + _prune(chosen, "bank") == 0
    replay = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION).json()
    assert (replay["output_ResponseCode"], replay["output_InsightReference"]) == (
        "-3",
        first["output_InsightReference"],
    )
    again = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert (again["output_ResponseCode"], again["output_BankTransactionRef"]) == (
        "-3",
        generated["output_BankTransactionRef"],
    )

    # Past retention: removed, and answered as the window answers it.
    clock.advance(seconds=1)
    assert _prune(chosen, "ipg") == 2  # the token and its redemption
    assert _prune(chosen, "bank") == 1
    replay = mocks.ipg.post("/token-redemption", json=DOCUMENT_REDEMPTION).json()
    assert replay["output_ResponseCode"] == "-9"
    new = mocks.bank.post("/token-generation", json=DOCUMENT_GENERATION).json()
    assert new["output_ResponseCode"] == "0"  # a replay after retention is a new Token Generation
    assert new["output_BankTransactionRef"] != generated["output_BankTransactionRef"]


# Served, under load


def _config(tmp_path: Path, retention_seconds: float) -> Path:
    config = tmp_path / "retention.toml"
    config.write_text(
        f"token_ttl_hours = {retention_seconds / 3600 / 2!r}\n"
        f"retention_days = {retention_seconds / 86400!r}\n"
    )
    return config


def _generation() -> dict[str, str]:
    return {**DOCUMENT_GENERATION, "input_TransactionID": uuid.uuid4().hex[:20]}


async def _load(url: str, seconds: float, on_answer, connections: int = 12) -> None:
    """Unique Token Generations on `connections` connections for `seconds`; each answer to on_answer."""
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def sender() -> None:
            while time.monotonic() < deadline:
                body = _generation()
                sent = time.monotonic()
                answer = (await client.post(url, json=body)).json()
                await on_answer(client, body, sent, answer)

        await asyncio.gather(*(sender() for _ in range(connections)))


def test_pruning_under_load_loses_no_acknowledged_write(serve, tmp_path):
    retention = 2.0
    served = serve("--workers", "2", "--config", str(_config(tmp_path, retention)), role="bank")
    url = served.bank_url + "/token-generation"
    acknowledged: list[tuple[float, dict[str, str], str]] = []
    # The last token acknowledged for each TransactionID: a replay past retention makes a new one.
    latest: dict[str, tuple[float, dict[str, str], str]] = {}
    wrong: list[str] = []

    async def check(
        client: httpx.AsyncClient, body: dict[str, str], sent: float, answer: dict[str, str]
    ) -> None:
        assert answer["output_ResponseCode"] == "0", answer
        acknowledged.append((sent, body, answer["output_BankTransactionRef"]))
        latest[body["input_TransactionID"]] = acknowledged[-1]
        # The replay of a token acknowledged earlier, well inside retention: the same reference.
        if len(acknowledged) > 50:
            then, old_body, reference = acknowledged[-50]
            replayed = time.monotonic()
            replay = (await client.post(url, json=old_body)).json()
            fresh = time.monotonic() - then < retention
            if fresh and (replay["output_ResponseCode"], replay.get("output_BankTransactionRef")) != (
                "-3",
                reference,
            ):
                wrong.append(f"{old_body['input_TransactionID']}: {replay}")
            elif replay["output_ResponseCode"] == "0":  # past retention, removed: a new token
                latest[old_body["input_TransactionID"]] = (
                    replayed,
                    old_body,
                    replay["output_BankTransactionRef"],
                )

    asyncio.run(_load(url, 5.0, check))
    assert not wrong, wrong[:5]

    async def replay_all() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for sent, body, reference in list(latest.values()):
                started = time.monotonic()
                answer = (await client.post(url, json=body)).json()
                if (answer["output_ResponseCode"], answer.get("output_BankTransactionRef")) == (
                    "-3",
                    reference,
                ):
                    continue
                # Else only legitimately past retention: removed, so a new token.
                if not (answer["output_ResponseCode"] == "0" and started - sent > retention):
                    wrong.append(f"{body['input_TransactionID']}, {started - sent:.2f} s old: {answer}")

    before = len(acknowledged)
    kept = _count(Settings(db_path=str(served.db_path)), "bank_tokens")
    # Pruning ran while the calls were answered. 400-700 calls in the 5 s here; 164 once, with the suite
    # on 4 workers and other work on the 2 cores: enough for tokens past the 2 s retention.
    assert before > 100 and kept < before, (before, kept)
    asyncio.run(replay_all())
    assert not wrong, wrong[:5]


def test_database_and_wal_stop_growing_once_retention_balances_the_load(serve, tmp_path):
    retention = 1.0
    served = serve("--workers", "2", "--config", str(_config(tmp_path, retention)), role="bank")
    url = served.bank_url + "/token-generation"
    db = Path(served.db_path)
    sizes: list[tuple[float, int, int]] = []
    started = time.monotonic()

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    async def record(client, body, sent, answer) -> None:
        assert answer["output_ResponseCode"] == "0", answer
        now = time.monotonic() - started
        if not sizes or now - sizes[-1][0] >= 0.25:
            sizes.append((now, size(db), size(Path(f"{db}-wal"))))

    asyncio.run(_load(url, 9.0, record))
    calls = _count(Settings(db_path=str(db)), "bank_tokens")
    # The last 2 s against the 2 s before them: with 2 workers on a busy machine a pruning pass may come
    # late and the file take a few dozen pages more up to about 7 s (seen once in CI: 0.25 MB at 5 s,
    # 0.34 MB from 7 s on), so the plateau is judged at the end of the run.
    early = [s for s in sizes if 5.0 <= s[0] < 7.0]
    late = [s for s in sizes if s[0] >= 7.0]
    report = "\n".join(f"{t:5.2f} s  db {d / 1e6:6.2f} MB  wal {w / 1e6:6.2f} MB" for t, d, w in sizes)
    print(report, f"\ntokens kept at the end: {calls}")
    assert early and late, report
    # Past five retentions of load, the database grows by no more than a few pages' slack.
    assert max(d for _, d, _ in late) <= max(d for _, d, _ in early) * 1.05 + 65536, report
    # The WAL is started over past _RESTART_AT and a longer file cut back to WAL_SIZE_LIMIT
    # (mocks/wal.py): it stays under that (7.9 MB here), not the 19-23 MB it reached before under
    # this load.
    assert max(w for _, _, w in sizes) <= WAL_SIZE_LIMIT, report
