"""The storage contract (mocks/storage.py), run against both backends: a SQLite file and a real
PostgreSQL database. Two stores on one database stand for two workers, or two instances: what one
decides, the other sees; what must be unique is unique across them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mpesa_atm.errors import StoreBusy, StoreConflict
from mpesa_atm.mocks.records import BankToken, IpgToken, JournalRecord, Kept
from mpesa_atm.mocks.storage import Storage, Transaction, open_store
from tests.fixtures.servers import wait_for


@pytest.fixture(params=["sqlite", "postgresql"])
def open_db(request, tmp_path) -> Iterator[Callable[[], Storage]]:
    """Opens stores on one database of the backend; each is closed after the test."""
    if request.param == "sqlite":
        db = str(tmp_path / "contract.sqlite3")
    else:
        db = request.getfixturevalue("postgres_url")
    opened: list[Storage] = []

    def open_one() -> Storage:
        store = open_store(db, journal_limit=50)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_db) -> Storage:
    return open_db()


def _bank_token(reference: str, transaction_id: str = "TX1", amount: str = "100.00") -> BankToken:
    return BankToken(
        reference.ljust(32, "0"), transaction_id, "254700000001", amount, "KES", None, "20261129 080000"
    )


def _ipg_token(reference: str = "R1", username: str = "bank1", created_at: float = 0.0) -> IpgToken:
    return IpgToken(
        username, reference.ljust(32, "0"), "G2TX1", "254700000001", "100.00", "KES", created_at, None, None
    )


def _record(role: str, operation: str, n: int) -> JournalRecord:
    return JournalRecord(role, "inbound", operation, "POST", "/x", 200, json.dumps({"n": n}), "not json", 1.0)


def _redeem(
    operation: str, key: str, reference: str, token_ref: str = "R1", pause: float = 0.0
) -> Callable[[Transaction], str]:
    """The iPG's decision reduced to what the store must make unique: the first success per duplicate
    key and one success per token and operation; a repeat answers the first reference. `pause`: a
    slow worker between its reads, in which another one's commit may land."""

    def decide(tx: Transaction) -> str:
        first = tx.first_ipg_answer(operation, "bank1", key)
        if first is not None:
            return f"duplicate {first}"
        time.sleep(pause)
        token = tx.ipg_token("bank1", token_ref.ljust(32, "0"))
        assert token is not None
        if token.redeemed_at is not None:
            return "already redeemed"
        tx.record_ipg_success(
            operation=operation,
            token=token,
            duplicate_key=key,
            insight_reference=reference,
            third_party_reference="TPR",
            at=time.time(),
        )
        return f"success {reference}"

    return decide


def _bank_tokens(store: Storage, *transaction_ids: str) -> list[bool]:
    """Whether the store has a bank token for each TransactionID."""

    def read(tx: Transaction) -> list[bool]:
        return [
            tx.bank_token_by_transaction_id(transaction_id) is not None for transaction_id in transaction_ids
        ]

    return asyncio.run(store.write(read))


# Tokens and transactions


def test_a_transaction_id_gets_one_bank_token_whatever_the_number_of_writers(open_db):
    first, second = open_db(), open_db()

    async def both() -> list[BankToken | None]:
        writes = [
            store.in_next_write(lambda tx, i=i: tx.add_bank_token_once(_bank_token(f"{i}"), time.time()))
            for i in range(20)
            for store in (first, second)
        ]
        return await asyncio.gather(*writes)

    answers = asyncio.run(both())
    added = [i for i, answer in enumerate(answers) if answer is None]
    assert len(added) == 1
    kept = {answer.bank_transaction_ref for answer in answers if answer is not None}
    assert len(kept) == 1  # every other write was told the one kept
    assert asyncio.run(second.write(lambda tx: tx.bank_token_by_transaction_id("TX1"))) is not None
    assert asyncio.run(second.write(lambda tx: tx.bank_token(kept.pop()))) is not None


def test_concurrent_repeats_of_one_redemption_succeed_once_and_answer_the_first_reference(open_db):
    first, second = open_db(), open_db()
    # Each decision pauses between reading "no duplicate" and reading the token, as a busy worker
    # may: the other store's commit lands there, and the token reads redeemed.
    rounds = [f"R{n}" for n in range(8)]
    for token in rounds:
        asyncio.run(first.write(lambda tx, token=token: tx.add_ipg_token(_ipg_token(token))))

    async def both(token: str) -> list[str]:
        decisions = [
            store.in_next_write(
                _redeem("token_redemption", f"KEY-{token}", f"{token}-REF{i}", token, pause=0.002)
            )
            for i in range(10)
            for store in (first, second)
        ]
        return await asyncio.gather(*decisions)

    for token in rounds:
        answers = asyncio.run(both(token))
        successes = [answer for answer in answers if answer.startswith("success")]
        assert len(successes) == 1, answers
        reference = successes[0].split()[1]
        assert sorted(set(answers)) == sorted({f"success {reference}", f"duplicate {reference}"}), answers


def test_another_redemption_of_a_redeemed_token_is_refused_across_writers(open_db):
    first, second = open_db(), open_db()
    asyncio.run(first.write(lambda tx: tx.add_ipg_token(_ipg_token())))

    async def both() -> list[str]:
        return await asyncio.gather(
            first.in_next_write(_redeem("token_redemption", "KEY-A", "REF-A")),
            second.in_next_write(_redeem("token_redemption", "KEY-B", "REF-B")),
        )

    answers = asyncio.run(both())
    assert sorted(answer.split()[0] for answer in answers) == ["already", "success"], answers
    token = asyncio.run(second.write(lambda tx: tx.ipg_token("bank1", "R1".ljust(32, "0"))))
    assert token is not None and token.redeemed_at is not None


def test_a_row_that_must_be_unique_is_a_conflict(store):
    def two_for_one_transaction_id(tx: Transaction) -> None:
        tx.add_bank_token(_bank_token("A", "TX9"), 0.0)
        tx.add_bank_token(_bank_token("B", "TX9"), 0.0)

    asyncio.run(store.write(lambda tx: tx.add_ipg_token(_ipg_token())))
    with pytest.raises(StoreConflict):
        asyncio.run(store.write(lambda tx: tx.add_ipg_token(_ipg_token())))
    with pytest.raises(StoreConflict):
        asyncio.run(store.write(two_for_one_transaction_id))
    # The failed transaction left nothing.
    assert asyncio.run(store.write(lambda tx: tx.bank_token_by_transaction_id("TX9"))) is None


def test_a_transaction_that_raises_writes_nothing(store):
    def changes_its_mind(tx: Transaction) -> None:
        tx.add_bank_token(_bank_token("A"), 0.0)
        raise RuntimeError("the caller changed its mind")

    with pytest.raises(RuntimeError):
        asyncio.run(store.write(changes_its_mind))
    assert asyncio.run(store.write(lambda tx: tx.bank_token_by_transaction_id("TX1"))) is None


def test_a_failing_work_of_a_turn_fails_alone(store):
    def fails(tx: Transaction) -> None:
        tx.add_bank_token(_bank_token("B", "TX2"), 0.0)
        raise ValueError("this work only")

    async def turn() -> list[object]:
        return await asyncio.gather(
            store.in_next_write(lambda tx: tx.add_bank_token_once(_bank_token("A", "TX1"), 0.0)),
            store.in_next_write(fails),
            store.in_next_write(lambda tx: tx.add_bank_token_once(_bank_token("C", "TX3"), 0.0)),
            return_exceptions=True,
        )

    answers = asyncio.run(turn())
    assert answers[0] is None and answers[2] is None
    assert isinstance(answers[1], ValueError)
    assert _bank_tokens(store, "TX1", "TX2", "TX3") == [True, False, True]  # TX2 undone with its work


def test_retention_removes_only_rows_past_the_cutoff_and_at_most_the_batch(store):
    def seeded(tx: Transaction) -> None:
        for i in range(5):
            tx.add_bank_token(_bank_token(f"OLD{i}", f"OLD{i}"), 100.0 + i)
        tx.add_bank_token(_bank_token("NEW", "NEW"), 1000.0)

    asyncio.run(store.write(seeded))

    async def remove(limit: int) -> int:
        return await store.in_next_write(lambda tx: tx.remove_older("bank_tokens", 500.0, limit))

    assert asyncio.run(remove(3)) == 3
    assert asyncio.run(remove(3)) == 2
    assert asyncio.run(remove(3)) == 0
    assert _bank_tokens(store, "NEW", "OLD4") == [True, False]


# Fault rules, modes and calls under way


def test_a_counted_fault_rule_fires_as_often_as_it_says_across_writers(open_db):
    first, second = open_db(), open_db()
    asyncio.run(first.fault_add("bank", "rule1", '{"response_code": "-7"}', 3, time.time()))

    async def claims() -> list[bool]:
        stores = (first, second) * 5
        return await asyncio.gather(*(store.fault_claim("rule1") for store in stores))

    assert sum(asyncio.run(claims())) == 3
    assert asyncio.run(second.fault_list("bank")) == [('{"response_code": "-7"}', 0)]
    assert asyncio.run(second.fault_candidates("bank")) == []  # spent
    assert asyncio.run(second.fault_delete("bank", "rule1"))
    assert not asyncio.run(first.fault_delete("bank", "rule1"))


def test_a_change_of_rules_or_modes_is_seen_by_every_writer_within_a_second(open_db):
    first, second = open_db(), open_db()
    before, seen = asyncio.run(first.config_version()), asyncio.run(second.config_version())
    asyncio.run(first.modes_set("ipg", {"offline": True}))
    assert asyncio.run(first.config_version()) != before  # at once for its own change
    wait_for(
        lambda: asyncio.run(second.config_version()) != seen, "the other writer sees the change", timeout=1
    )
    assert asyncio.run(second.modes_get("ipg")) == {"offline": True}
    assert asyncio.run(second.modes_get("bank")) is None
    seen = asyncio.run(second.config_version())
    asyncio.run(first.fault_add("ipg", "rule2", "{}", None, time.time()))
    wait_for(
        lambda: asyncio.run(second.config_version()) != seen, "the other writer sees the new rule", timeout=1
    )
    assert [rule_id for rule_id, _, _ in asyncio.run(second.fault_candidates("ipg"))] == ["rule2"]


def test_calls_under_way_are_counted_across_writers_up_to_the_limit(open_db):
    first, second = open_db(), open_db()

    async def enter_all() -> list[bool]:
        return [await store.calls_enter("ipg", 3) for store in (first, second, first, second)]

    assert asyncio.run(enter_all()) == [True, True, True, False]
    asyncio.run(second.calls_leave("ipg"))
    assert asyncio.run(first.calls_enter("ipg", 3))
    assert asyncio.run(first.calls_enter("bank", 1))  # each role its own count
    asyncio.run(second.calls_clear("ipg"))
    assert asyncio.run(first.calls_enter("ipg", 1))


# Journal and resets


def test_the_journal_shows_every_writers_entries_newest_first(open_db):
    first, second = open_db(), open_db()
    records = [_record("ipg", "token_redemption", 1), _record("bank", "token_generation", 2)]
    asyncio.run(first.journal_add_many(records))
    asyncio.run(second.journal_in_next_write(_record("ipg", "token_reversal", 3)))
    entries = asyncio.run(first.journal("ipg"))
    assert [entry.request for entry in entries] == [{"n": 3}, {"n": 1}]
    assert entries[0].response == "not json"  # kept as text
    assert entries[0].id > entries[1].id
    redemptions = asyncio.run(second.journal("ipg", operation="token_redemption"))
    assert [entry.request for entry in redemptions] == [{"n": 1}]
    assert [entry.request for entry in asyncio.run(second.journal("bank", limit=5))] == [{"n": 2}]
    assert len(asyncio.run(first.journal("ipg", limit=1))) == 1


def test_the_journal_shows_the_directions_asked_for(store):
    """A mock shows its own entries (inbound, outbound), a proxy on the same store its own (proxy)."""
    records = [
        _record("ipg", "token_redemption", n)._replace(direction=direction)
        for n, direction in enumerate(("inbound", "proxy", "outbound", "proxy"))
    ]
    asyncio.run(store.journal_add_many(records))
    mine = asyncio.run(store.journal("ipg", directions=("inbound", "outbound")))
    assert [entry.request for entry in mine] == [{"n": 2}, {"n": 0}]
    proxied = asyncio.run(store.journal("ipg", directions=("proxy",), limit=1))
    assert [entry.request for entry in proxied] == [{"n": 3}]
    assert len(asyncio.run(store.journal("ipg"))) == 4


def test_the_journal_keeps_about_its_limit(store):
    async def in_tens() -> None:
        for n in range(0, 300, 10):
            await store.journal_add_many([_record("bank", "token_generation", n + i) for i in range(10)])

    asyncio.run(in_tens())
    entries = asyncio.run(store.journal("bank", limit=1000))
    assert len(entries) == 50  # the newest journal_limit
    assert entries[0].request == {"n": 299}


def test_a_reset_empties_its_role_and_leaves_the_other(store):
    def seeded(tx: Transaction) -> None:
        tx.add_ipg_token(_ipg_token())
        tx.add_bank_token(_bank_token("A"), 0.0)

    async def set_up() -> int:
        await store.write(seeded)
        await store.fault_add("ipg", "rule", "{}", None, 0.0)
        await store.modes_set("ipg", {"offline": True})
        records = [_record("ipg", "token_redemption", 1), _record("bank", "token_generation", 2)]
        await store.journal_add_many(records)
        return await store.config_version()

    before = asyncio.run(set_up())

    asyncio.run(store.reset("ipg"))

    assert asyncio.run(store.config_version()) != before
    assert asyncio.run(store.fault_list("ipg")) == []
    assert asyncio.run(store.modes_get("ipg")) is None
    assert asyncio.run(store.journal("ipg")) == []
    assert asyncio.run(store.write(lambda tx: tx.ipg_token("bank1", "R1".ljust(32, "0")))) is None
    assert _bank_tokens(store, "TX1") == [True]
    assert len(asyncio.run(store.journal("bank"))) == 1


def test_the_counts_say_what_each_role_keeps_and_a_reset_forgets(store):
    """What `serve` says it kept from an earlier run: each role's own rows, one count a table."""

    def seeded(tx: Transaction) -> None:
        tx.add_ipg_token(_ipg_token("R1"))
        tx.add_ipg_token(_ipg_token("R2"))
        tx.add_bank_token(_bank_token("A"), 0.0)

    asyncio.run(store.write(seeded))
    assert asyncio.run(store.in_next_write(_redeem("token_redemption", "KEY", "REF"))) == "success REF"
    asyncio.run(store.fault_add("bank", "rule", "{}", 1, 0.0))
    asyncio.run(store.modes_set("ipg", {"offline": True}))

    assert asyncio.run(store.counts("ipg")) == Kept(tokens=2, transactions=1, modes=True)
    assert asyncio.run(store.counts("bank")) == Kept(tokens=1, fault_rules=1)
    asyncio.run(store.reset("bank"))
    assert not asyncio.run(store.counts("bank"))
    assert asyncio.run(store.counts("ipg")).words() == "2 tokens, 1 transaction, modes"


def test_a_reset_of_one_bank_leaves_the_other_banks_and_the_rules(store):
    def seeded(tx: Transaction) -> None:
        tx.add_ipg_token(_ipg_token("R1", "bank1"))
        tx.add_ipg_token(_ipg_token("R2", "bank2"))

    def left(tx: Transaction) -> tuple[bool, bool, bool]:
        return (
            tx.ipg_token("bank1", "R1".ljust(32, "0")) is not None,
            tx.first_ipg_answer("token_redemption", "bank1", "KEY") is not None,
            tx.ipg_token("bank2", "R2".ljust(32, "0")) is not None,
        )

    asyncio.run(store.write(seeded))
    assert asyncio.run(store.in_next_write(_redeem("token_redemption", "KEY", "REF"))) == "success REF"
    asyncio.run(store.fault_add("ipg", "rule", "{}", None, 0.0))
    assert asyncio.run(store.write(left)) == (True, True, True)

    asyncio.run(store.reset("ipg", username="bank1"))

    assert asyncio.run(store.write(left)) == (False, False, True)
    assert len(asyncio.run(store.fault_list("ipg"))) == 1
    with pytest.raises(ValueError):
        asyncio.run(store.reset("bank", username="bank1"))


def test_closing_a_store_again_leaves_what_was_opened_since_alone(open_db):
    """An app's lifespan and the store's owner may both close it: the second close does nothing, and
    above all does not close again what the first one released and another store now holds (its
    file descriptors, its connections)."""
    store = open_db()
    asyncio.run(store.write(lambda tx: tx.add_bank_token(_bank_token("A", "TX1"), 0.0)))
    asyncio.run(store.journal_add_many([_record("bank", "token_generation", 1)]))
    store.close()
    other = open_db()  # may be given what the first one released
    store.close()
    assert _bank_tokens(other, "TX1") == [True]
    asyncio.run(other.journal_add_many([_record("bank", "token_generation", 2)]))
    assert [entry.request for entry in asyncio.run(other.journal("bank"))] == [{"n": 2}, {"n": 1}]


# PostgreSQL only


def test_a_store_opening_beside_a_write_under_way_does_not_wait_for_it(postgres_url):
    """An instance that starts while others write: no DDL once the tables are there (CREATE INDEX
    IF NOT EXISTS would wait for the write's table lock, and make every later write wait behind it)."""
    first = open_store(postgres_url)
    opened: list[Storage] = []
    opening = threading.Thread(target=lambda: opened.append(open_store(postgres_url)))

    def write_while_another_opens(tx: Transaction) -> bool:
        tx.add_bank_token(_bank_token("A"), 0.0)  # uncommitted: its table locked for writes
        opening.start()
        opening.join(2)
        return opening.is_alive()

    try:
        waited = asyncio.run(first.write(write_while_another_opens))
        opening.join()  # after the commit, in any case
        assert not waited, "the second store waited for the first one's write to end"
    finally:
        first.close()
        for store in opened:
            store.close()


def test_text_is_text_in_a_database_of_any_encoding(postgres_server):
    import psycopg  # the postgres extra: present where postgres_server is

    name = postgres_server.create_database()
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")
        admin.execute(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    store = open_store(postgres_server.url(name))
    try:
        asyncio.run(store.write(lambda tx: tx.add_ipg_token(_ipg_token())))
        assert asyncio.run(store.write(lambda tx: tx.ipg_token("bank1", "R1".ljust(32, "0")))) == _ipg_token()
    finally:
        store.close()
        postgres_server.drop_database(name)


def test_a_write_waiting_for_a_lock_another_session_holds_gives_up_at_the_busy_timeout(postgres_url):
    """A migration's DDL or a tool's LOCK TABLE in another session: the call's write is StoreBusy (-7)
    at the busy timeout, not left waiting for as long as the lock is held."""
    import psycopg  # the postgres extra: present where postgres_url is

    store = open_store(postgres_url, busy_timeout=0.5)
    try:
        with psycopg.connect(postgres_url) as holder:  # one transaction, until the block ends
            holder.execute("LOCK TABLE bank_tokens IN ACCESS EXCLUSIVE MODE")

            async def write() -> None:
                await store.in_next_write(lambda tx: tx.add_bank_token_once(_bank_token("L"), 0.0))

            started = time.monotonic()
            with pytest.raises(StoreBusy, match="lock timeout"):
                asyncio.run(asyncio.wait_for(write(), timeout=5))
            assert time.monotonic() - started < 2.0
        # The lock gone, the store writes again.
        assert asyncio.run(store.write(lambda tx: tx.add_bank_token_once(_bank_token("L"), 0.0))) is None
    finally:
        store.close()
