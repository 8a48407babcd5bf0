"""The proxy's judgement across exchanges (src/mpesa_atm/proxy/ledger.py), without servers: exchanges
built here, observed by Ledgers on a SQLite file and on a real PostgreSQL database. For each rule a
correct history gives no finding and a broken one the finding with its rule, check, side and severity;
two Ledgers on one store stand for two workers (or two proxies, one per role) and judge alike, in any
order and at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mpesa_atm.fuzz.expectations import ACTIONS
from mpesa_atm.mocks.bank import BankRules
from mpesa_atm.mocks.ipg import IpgRules, issued_token
from mpesa_atm.mocks.records import LEDGER_TABLES
from mpesa_atm.mocks.retention import Retention
from mpesa_atm.mocks.storage import Storage, Transaction, open_store
from mpesa_atm.proxy.findings import Exchange, Finding
from mpesa_atm.proxy.ledger import WINDOW_MARGIN, Ledger
from mpesa_atm.settings import Settings
from tests.fixtures.mocks import DOCUMENT_REDEMPTION
from tests.fixtures.postgres import psycopg_module
from tests.fixtures.seeds import seeds

SEEDS = seeds()
START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SETTINGS = Settings()  # token_ttl: the document's 2 days


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def workers(request, tmp_path_factory) -> Iterator[tuple[str, list[Storage]]]:
    """Two stores on one database of the backend (two workers'), for the module's tests: opening
    them and a database costs more than a test."""
    if request.param == "sqlite":
        db = str(tmp_path_factory.mktemp("ledger") / "ledger.sqlite3")
    else:
        server = request.getfixturevalue("postgres_server")
        name = server.create_database()
        request.addfinalizer(lambda: server.drop_database(name))
        db = server.url(name)
    stores = [open_store(db), open_store(db)]
    try:
        yield db, stores
    finally:
        for store in stores:
            store.close()


@pytest.fixture
def open_db(workers) -> Iterator[Callable[[], Storage]]:
    """Hands out the stores of two workers on one database, emptied of the ledger after the test."""
    db, stores = workers
    given = iter(stores)
    yield lambda: next(given)
    if db.startswith("postgresql://"):
        with psycopg_module().connect(db, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(LEDGER_TABLES)}")
    else:
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            for table in LEDGER_TABLES:
                conn.execute(f"DELETE FROM {table}")


@pytest.fixture
def ledger(open_db) -> Ledger:
    return Ledger(open_db(), SETTINGS)


class Traffic:
    """Exchanges of one bank and one iPG as a proxy would hand them over: ids in order, times from a
    clock the test moves."""

    def __init__(self) -> None:
        self.now = START
        self.count = 0
        self.references = 0

    def later(self, delta: timedelta) -> None:
        self.now += delta

    def _exchange(self, role: str, operation: str, request: dict[str, str] | None, answer: Any) -> Exchange:
        self.count += 1
        return Exchange(
            exchange_id=f"x{self.count}",
            role=role,  # type: ignore[arg-type]
            operation_id=operation,
            request=request,
            status=200 if answer is not None else 0,
            answer=answer,
            at=self.now,
        )

    def reference(self, prefix: str = "r") -> str:
        self.references += 1
        return f"{prefix}{self.references:04d}".ljust(32, "0")

    def generation(
        self,
        transaction_id: str,
        code: str = "0",
        reference: str | None = None,
        *,
        msisdn: str = "243843330333",
        amount: str = "200",
        currency: str = "CDF",
    ) -> Exchange:
        request = {
            "input_CustomerMSISDN": msisdn,
            "input_Amount": amount,
            "input_Currency": currency,
            "input_TransactionID": transaction_id,
        }
        answer = {
            "output_ResponseCode": code,
            "output_ResponseDesc": "Success" if code == "0" else "Duplicate" if code == "-3" else "Failure",
            "output_BankTransactionRef": reference if reference is not None else self.reference("g"),
            "output_BankDateTime": "20261201 080000",
        }
        return self._exchange("bank", "token_generation", request, answer)

    def _ipg(
        self,
        operation: str,
        token: str,
        third_party: str,
        code: str | None,
        insight: str | None,
        extra: dict[str, str],
        details: dict[str, str],
    ) -> Exchange:
        request = {
            "input_Username": "fnb",
            "input_Password": "P@ssword123",
            "input_CustomerMSISDN": "243843330333",
            "input_Currency": "CDF",
            "input_BankShortcode": "49272",
            "input_Amount": "200",
            "input_ThirdPartyReference": third_party,
            "input_BankTransactionRef": token,
            **details,
            **extra,
        }
        answer = (
            None
            if code is None
            else {
                "output_ResponseCode": code,
                "output_ResponseDesc": {"0": "Success", "-3": "Duplicate"}.get(code, "Failure"),
                "output_InsightReference": insight if insight is not None else self.reference("i")[:19],
                "output_ThirdPartyReference": third_party,
            }
        )
        return self._exchange("ipg", operation, request, answer)

    def redemption(
        self, token: str, third_party: str, code: str | None = "0", insight: str | None = None, **details: str
    ) -> Exchange:
        return self._ipg("token_redemption", token, third_party, code, insight, {}, _fields(details))

    def reversal(
        self,
        token: str,
        transaction_id: str,
        third_party: str,
        code: str | None = "0",
        insight: str | None = None,
        **details: str,
    ) -> Exchange:
        extra = {"input_TransactionID": transaction_id}
        return self._ipg("token_reversal", token, third_party, code, insight, extra, _fields(details))


def _fields(details: dict[str, str]) -> dict[str, str]:
    names = {"msisdn": "input_CustomerMSISDN", "amount": "input_Amount", "currency": "input_Currency"}
    return {names[name]: value for name, value in details.items()}


def _token_of(generation: Exchange) -> str:
    assert generation.answer is not None
    return str(generation.answer["output_BankTransactionRef"])


def observe(ledger: Ledger, *exchanges: Exchange) -> list[tuple[Finding, ...]]:
    """Each exchange observed in turn: the findings of each."""

    async def each() -> list[tuple[Finding, ...]]:
        return [await ledger.observe(exchange) for exchange in exchanges]

    return asyncio.run(each())


def only(findings: Sequence[tuple[Finding, ...]]) -> Finding:
    """The one finding of all the exchanges."""
    every = [finding for found in findings for finding in found]
    assert len(every) == 1, every
    return every[0]


def assert_finding(
    finding: Finding, rule: str, check: str, side: str, severity: str, exchange_ids: tuple[str, ...]
) -> None:
    assert (finding.rule, finding.check, finding.side, finding.severity) == (rule, check, side, severity)
    assert finding.exchange_ids == exchange_ids
    assert finding.message.startswith("Received: ")
    assert "\nDocumented: " in finding.message


# A correct history -------------------------------------------------------------------------------


def test_a_correct_bank_and_ipg_give_no_finding(ledger):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A", reference="12345678123412341234123456789abc")
    token = _token_of(generated)
    paid, reversed_ = "12sdxq3634dadsas242", "12sdxq3634dadsas243"
    assert (
        observe(
            ledger,
            generated,
            traffic.generation("BVA12369A", "-3", reference=token),  # the iPG's retry: the first token
            traffic.generation("BVA12369A", "-1", msisdn="243843330999"),  # same ID, other details: refused
            traffic.redemption(token, "tpr-1", insight=paid),
            traffic.redemption(token, "tpr-1", "-3", insight=paid),  # the bank's retry
            traffic.redemption(token, "tpr-2", "-1"),  # paid already: refused
            traffic.reversal(token, "BVA12369A", "rev-1", insight=reversed_),  # a failed dispense
            traffic.reversal(token, "BVA12369A", "rev-1", "-3", insight=reversed_),  # its retry
            traffic.reversal(token, "BVA12369A", "rev-2", "-1"),  # reversed already: refused
            traffic.redemption(token, "tpr-3", "-1"),
        )
        == [()] * 10
    )


def test_a_duplicate_answer_carrying_the_first_reference_passes(ledger):
    traffic = Traffic()
    first = traffic.redemption("t".ljust(32, "0"), "tpr-1", insight="first-insight-ref01")
    reversal = traffic.reversal("t".ljust(32, "0"), "BVA1", "rev-1", insight="first-insight-ref02")
    assert observe(
        ledger,
        first,
        traffic.redemption("t".ljust(32, "0"), "tpr-1", "-3", insight="first-insight-ref01"),
        reversal,
        traffic.reversal("t".ljust(32, "0"), "BVA1", "rev-1", "-3", insight="first-insight-ref02"),
    ) == [(), (), (), ()]


# Repeats (duplicate, replay_is_duplicate) --------------------------------------------------------


def test_a_repeat_paid_again_is_not_a_duplicate(ledger):
    traffic = Traffic()
    token = traffic.reference()
    first = traffic.redemption(token, "tpr-1", insight="first-insight-ref01")
    again = traffic.redemption(token, "tpr-1", insight="other-insight-ref01")
    finding = only(observe(ledger, first, again))
    assert_finding(finding, "duplicate", "replay_is_duplicate", "upstream", "failure", ("x1", "x2"))
    assert finding.title == "A repeat of a request answered 0 is not answered Duplicate"
    assert '"first-insight-ref01"' in finding.message


def test_a_duplicate_with_another_reference_fails(ledger):
    traffic = Traffic()
    token = traffic.reference()
    first = traffic.redemption(token, "tpr-1", insight="first-insight-ref01")
    again = traffic.redemption(token, "tpr-1", "-3", insight="other-insight-ref01")
    finding = only(observe(ledger, first, again))
    assert_finding(finding, "duplicate", "replay_is_duplicate", "upstream", "failure", ("x1", "x2"))
    assert finding.title == "The Duplicate answer does not carry the first output_InsightReference"


def test_the_amount_of_a_repeat_is_read_as_the_document_reads_it(ledger):
    """200 and 200.00 are one amount: the same duplicate set."""
    traffic = Traffic()
    token = traffic.reference()
    first = traffic.redemption(token, "tpr-1", insight="first-insight-ref01")
    again = traffic.redemption(token, "tpr-1", insight="other-insight-ref01", amount="200.00")
    assert only(observe(ledger, first, again)).rule == "duplicate"


def test_a_bank_answering_a_repeat_with_a_new_reference_fails(ledger):
    traffic = Traffic()
    first = traffic.generation("BVA12369A")
    new_token = traffic.generation("BVA12369A")  # 0 again, a token of its own
    new_reference = traffic.generation("BVA12369A", "-3")  # -3, but another reference
    found = observe(ledger, first, new_token, new_reference)
    assert found[0] == ()
    for finding, second in zip((*found[1], *found[2]), ("x2", "x3"), strict=True):
        assert_finding(finding, "duplicate", "replay_is_duplicate", "upstream", "failure", ("x1", second))
        assert "output_BankTransactionRef" in finding.message
        assert repr(_token_of(first)).strip("'") in finding.message


def test_a_repeat_of_a_refused_request_may_be_paid_and_is_then_the_first(ledger):
    traffic = Traffic()
    token = traffic.reference()
    found = observe(
        ledger,
        traffic.redemption(token, "tpr-1", "-1"),
        traffic.redemption(token, "tpr-1", insight="first-insight-ref01"),
        traffic.redemption(token, "tpr-1", insight="other-insight-ref01"),
    )
    assert found[:2] == [(), ()]
    assert_finding(only(found), "duplicate", "replay_is_duplicate", "upstream", "failure", ("x2", "x3"))


@pytest.mark.parametrize("code", ["-7", "-8", "-2", "-6", "-4", "-5", None])
def test_an_answer_that_did_not_look_at_the_request_is_not_judged(ledger, code):
    """The platform's bad days and the credentials say nothing of the history; no answer at all (a
    reset, a time-out) is what the duplicate rules exist for: the retry then is judged."""
    traffic = Traffic()
    token = traffic.reference()
    assert observe(
        ledger,
        traffic.redemption(token, "tpr-0", code),  # nothing recorded: the next 0 is the first
        traffic.redemption(token, "tpr-1", insight="first-insight-ref01"),
        traffic.redemption(token, "tpr-1", code),
        traffic.redemption(token, "tpr-2", code),
    ) == [(), (), (), ()]


def test_a_request_without_the_fields_of_its_duplicate_check_is_left_to_the_checks_of_one_exchange(ledger):
    traffic = Traffic()
    token = traffic.reference()
    paid = traffic.redemption(token, "tpr-1")
    request = dict(paid.request or {})
    del request["input_ThirdPartyReference"]
    lacking = Exchange("x9", "ipg", "token_redemption", request, 200, paid.answer, START)
    not_json = Exchange("x10", "ipg", "token_redemption", None, 200, paid.answer, START)
    assert observe(ledger, paid, lacking, not_json, traffic.redemption(token, "tpr-2", "-1")) == [()] * 4


# Tokens paid once (token_once) ------------------------------------------------------------------


@pytest.mark.parametrize("seen_generated", [True, False], ids=["generation seen", "generation not seen"])
def test_an_ipg_that_pays_a_token_twice_fails_token_once(ledger, seen_generated):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    exchanges = [generated] if seen_generated else []
    exchanges += [traffic.redemption(token, "tpr-1"), traffic.redemption(token, "tpr-2")]
    found = observe(ledger, *exchanges)
    first, second = exchanges[-2].exchange_id, exchanges[-1].exchange_id
    finding = only(found)
    assert_finding(finding, "token_once", "token_lifecycle", "upstream", "failure", (first, second))
    assert finding.title == "A token was paid twice, or after it was reversed"
    assert f"redeemed (answered 0) in exchange {first}" in finding.message


def test_a_token_paid_after_its_reversal_fails_token_once(ledger):
    traffic = Traffic()
    token = traffic.reference()
    found = observe(ledger, traffic.reversal(token, "BVA1", "rev-1"), traffic.redemption(token, "tpr-1"))
    assert_finding(only(found), "token_once", "token_lifecycle", "upstream", "failure", ("x1", "x2"))


def test_a_token_reversed_twice_fails_token_once(ledger):
    traffic = Traffic()
    token = traffic.reference()
    found = observe(
        ledger,
        traffic.redemption(token, "tpr-1"),
        traffic.reversal(token, "BVA1", "rev-1"),
        traffic.reversal(token, "BVA1", "rev-2"),
    )
    finding = only(found)
    assert_finding(finding, "token_once", "token_lifecycle", "upstream", "failure", ("x2", "x3"))
    assert finding.title == "A token was reversed twice"


def test_tokens_are_a_banks_own(ledger):
    """Two banks (usernames) paid a reference each once: no token paid twice (docs/spec-notes.md row 14)."""
    traffic = Traffic()
    token = traffic.reference()
    first = traffic.redemption(token, "tpr-1")
    other = traffic.redemption(token, "tpr-2")
    other = Exchange(
        other.exchange_id,
        "ipg",
        other.operation_id,
        {**(other.request or {}), "input_Username": "other"},
        200,
        other.answer,
        other.at,
    )
    assert observe(ledger, first, other) == [(), ()]


# The token's generation (token_details, token_window, reversal_transaction, unknown_token) -------


@pytest.mark.parametrize(
    ("details", "field"),
    [
        ({"amount": "300"}, "input_Amount"),
        ({"msisdn": "243843330999"}, "input_CustomerMSISDN"),
        ({"currency": "USD"}, "input_Currency"),
    ],
)
def test_a_token_paid_for_other_details_fails_token_details(ledger, details, field):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    found = observe(
        ledger,
        generated,
        traffic.redemption(token, "tpr-1", "-1", **details),  # refused: right
        traffic.redemption(token, "tpr-2", **details),  # paid: wrong
    )
    finding = only(found)
    assert_finding(finding, "token_details", "token_lifecycle", "upstream", "failure", ("x1", "x3"))
    assert field in finding.title or field in finding.message


def test_a_token_paid_with_its_own_details_written_otherwise_passes(ledger):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A", amount="200")
    assert observe(ledger, generated, traffic.redemption(_token_of(generated), "tpr-1", amount="200.00")) == [
        (),
        (),
    ]


def test_a_token_paid_after_the_window_fails_token_window(ledger):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    observe(ledger, generated)
    traffic.later(SETTINGS.token_ttl + WINDOW_MARGIN + timedelta(seconds=1))
    late = traffic.redemption(token, "tpr-1")
    finding = only(observe(ledger, late))
    assert_finding(finding, "token_window", "token_lifecycle", "upstream", "failure", ("x1", "x2"))
    assert "48.0 h earlier" in finding.message


@pytest.mark.parametrize(
    "age", [timedelta(hours=47), SETTINGS.token_ttl + WINDOW_MARGIN / 2], ids=["within", "at the edge"]
)
def test_a_token_paid_within_the_window_or_at_its_edge_passes(ledger, age):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    observe(ledger, generated)
    traffic.later(age)
    assert observe(ledger, traffic.redemption(_token_of(generated), "tpr-1")) == [()]


def test_an_expired_token_refused_otherwise_than_not_found_is_not_judged(ledger):
    """Which refusal is the partner's (docs/spec-notes.md row 24): only a payment is held."""
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    observe(ledger, generated)
    traffic.later(timedelta(days=3))
    assert observe(ledger, traffic.redemption(_token_of(generated), "tpr-1", "-1")) == [()]


def test_a_reversal_quoting_another_transaction_is_the_clients_and_paying_it_the_upstreams(ledger):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    found = observe(
        ledger,
        generated,
        traffic.reversal(token, "OTHER0001", "rev-1", "-9"),  # refused: the client's break alone
        traffic.reversal(token, "OTHER0002", "rev-2"),  # reversed: both sides'
    )
    assert found[0] == ()
    (client,) = found[1]
    assert_finding(client, "reversal_transaction", "token_lifecycle", "client", "failure", ("x1", "x2"))
    assert '"BVA12369A"' in client.message and '"OTHER0001"' in client.message
    sides = {finding.side: finding for finding in found[2]}
    assert set(sides) == {"client", "upstream"}
    assert_finding(
        sides["upstream"], "reversal_transaction", "token_lifecycle", "upstream", "failure", ("x1", "x3")
    )
    assert (
        sides["upstream"].title == "A reversal quoting another input_TransactionID than the token's succeeded"
    )


def test_a_reversal_of_a_token_never_seen_generated_is_not_held_to_a_transaction(ledger):
    traffic = Traffic()
    assert observe(ledger, traffic.reversal(traffic.reference(), "ANY0001", "rev-1")) == [()]


def test_a_reference_of_a_refused_generation_paid_fails_unknown_token(ledger):
    traffic = Traffic()
    refused = traffic.generation("BVA12369A", "-1")
    token = _token_of(refused)
    found = observe(
        ledger, refused, traffic.redemption(token, "tpr-1", "-9"), traffic.redemption(token, "tpr-2")
    )
    finding = only(found)
    assert_finding(finding, "unknown_token", "token_lifecycle", "upstream", "failure", ("x1", "x3"))
    reversed_ = only(observe(ledger, traffic.reversal(token, "BVA12369A", "rev-1")))
    assert (reversed_.rule, reversed_.side) == ("unknown_token", "upstream")


def test_a_reference_refused_then_generated_is_a_token(ledger):
    traffic = Traffic()
    refused = traffic.generation("BVA12369A", "-1")
    token = _token_of(refused)
    generated = traffic.generation("BVA12369B", reference=token)
    again = traffic.generation("BVA12369C", "-1", reference=token)  # a later refusal takes nothing back
    assert observe(ledger, refused, generated, again, traffic.redemption(token, "tpr-1")) == [()] * 4


# Where the document is silent (reversible_tokens, docs/spec-notes.md row 26) ---------------------


def test_an_ipg_that_reverses_only_redeemed_tokens_is_warned_never_failed(ledger):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    found = observe(
        ledger,
        generated,
        traffic.reversal(token, "BVA12369A", "rev-1", "-1"),  # unredeemed: refused
        traffic.redemption(token, "tpr-1"),
        traffic.reversal(token, "BVA12369A", "rev-2"),  # redeemed: reversed
    )
    finding = only(found)
    assert_finding(finding, "reversible_tokens", "token_lifecycle", "upstream", "warning", ("x1", "x2"))
    assert finding.title == "The first reversal of a token was refused"


def test_a_refused_reversal_is_not_warned_where_another_reason_may_be_why(ledger):
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    observe(ledger, generated)
    other_amount = traffic.reversal(token, "BVA12369A", "rev-1", "-1", amount="300")  # details differ
    unseen = traffic.reversal(traffic.reference(), "BVA1", "rev-2", "-1")  # never seen generated
    assert observe(ledger, other_amount, unseen) == [(), ()]
    traffic.later(timedelta(days=3))  # expired: -9 is the document's answer
    late = traffic.reversal(token, "BVA12369A", "rev-3", "-9")
    assert observe(ledger, late) == [()]


# Workers and proxies sharing one store ----------------------------------------------------------


def test_two_ledgers_on_one_store_judge_by_one_history(open_db):
    """A bank proxy and an iPG proxy (or two workers of one) on one --db."""
    bank_side, ipg_side = Ledger(open_db(), SETTINGS), Ledger(open_db(), SETTINGS)
    traffic = Traffic()
    generated = traffic.generation("BVA12369A")
    token = _token_of(generated)
    assert observe(bank_side, generated) == [()]
    found = observe(ipg_side, traffic.redemption(token, "tpr-1", amount="999"))
    assert only(found).rule == "token_details"
    assert only(observe(bank_side, traffic.redemption(token, "tpr-2"))).rule == "token_once"


def test_two_workers_seeing_a_token_paid_twice_at_once_find_it_once(open_db):
    stores = [open_db(), open_db()]
    ledgers = [Ledger(store, SETTINGS) for store in stores]
    traffic = Traffic()
    tokens = [traffic.reference() for _ in range(10)]
    exchanges = [traffic.redemption(token, f"tpr-{i}-{n}") for token in tokens for n in range(2) for i in [0]]

    async def at_once() -> list[tuple[Finding, ...]]:
        return await asyncio.gather(
            *(ledgers[n % 2].observe(exchange) for n, exchange in enumerate(exchanges))
        )

    found = [finding for findings in asyncio.run(at_once()) for finding in findings]
    assert Counter(finding.rule for finding in found) == {"token_once": len(tokens)}


@pytest.mark.parametrize("seed", SEEDS)
def test_findings_do_not_depend_on_the_order_or_the_worker(open_db, seed):
    """One traffic observed by two ledgers in a random order (each token's own steps in theirs, as a
    client sends a step once it has the last one's answer), a few exchanges at once: a correct
    partner's tokens give no finding; a token paid three times gives two token_once findings; a
    request paid three times, two duplicate findings; a bank answering a repeat 0 with a new token,
    one duplicate finding."""
    rng = random.Random(seed)
    ledgers = [Ledger(open_db(), SETTINGS), Ledger(open_db(), SETTINGS)]
    traffic = Traffic()
    streams: list[list[Exchange]] = []
    for n in range(4):  # correct: paid once, reversed once; the retries -3 with the first reference
        token = traffic.reference()
        insight, reversal = f"insight-{n}".ljust(19, "0"), f"reversal-{n}".ljust(19, "0")
        streams.append(
            [
                traffic.redemption(token, f"ok-{n}", insight=insight),
                traffic.redemption(token, f"ok-{n}-again", "-1"),
                traffic.reversal(token, "BVA1", f"rev-{n}", insight=reversal),
            ]
        )
        # A retry may cross its original (the client gave up waiting): any order.
        streams += [[traffic.redemption(token, f"ok-{n}", "-3", insight=insight)] for _ in range(2)]
        streams.append([traffic.reversal(token, "BVA1", f"rev-{n}", "-3", insight=reversal)])
    paid_thrice = traffic.reference()
    streams += [[traffic.redemption(paid_thrice, f"thrice-{n}")] for n in range(3)]
    repeated = traffic.reference()
    streams += [[traffic.redemption(repeated, "same")] for _ in range(3)]
    streams += [[traffic.generation("BVA7777")] for _ in range(2)]

    async def in_batches() -> list[Finding]:
        found: list[Finding] = []
        while streams:
            batch = rng.sample(streams, min(rng.randint(1, 4), len(streams)))
            heads = [stream.pop(0) for stream in batch]
            streams[:] = [stream for stream in streams if stream]
            for findings in await asyncio.gather(*(rng.choice(ledgers).observe(ex) for ex in heads)):
                found.extend(findings)
        return found

    found = asyncio.run(in_batches())
    assert Counter(finding.rule for finding in found) == {"token_once": 2, "duplicate": 3}, [
        (f.rule, f.title, f.exchange_ids) for f in found
    ]


# What the store keeps ----------------------------------------------------------------------------


def test_the_ledger_leaves_the_store_with_retention(open_db):
    """A proxy left running prunes its ledger as the mocks prune their tables (mocks/retention.py):
    what it saw more than retention_days ago is forgotten, what it saw since is kept and judged."""
    clock = [START]
    settings = Settings(clock=lambda: clock[0])
    store = open_db()
    ledger = Ledger(store, settings)
    traffic = Traffic()
    old_generation = traffic.generation("BVA0001")
    old = _token_of(old_generation)
    observe(ledger, old_generation, traffic.redemption(old, "tpr-1"))
    traffic.later(settings.retention + timedelta(hours=1))
    new_generation = traffic.generation("BVA0002")
    new = _token_of(new_generation)
    observe(ledger, new_generation, traffic.redemption(new, "tpr-1"))
    clock[0] = traffic.now

    async def prune() -> int:
        return await Retention(store, "ipg", settings, tables=LEDGER_TABLES).prune()

    # The old token's: two first answers (its generation's, its redemption's), its payment, its generation.
    assert asyncio.run(prune()) == 4
    assert only(observe(ledger, traffic.redemption(new, "tpr-2"))).rule == "token_once"
    assert observe(ledger, traffic.redemption(old, "tpr-2")) == [()]  # forgotten, as the mocks forget it


def test_a_postgresql_database_made_before_the_ledger_gets_its_tables(postgres_url):
    """A shared sandbox's database made by an earlier version: the store adds the ledger's tables."""
    from mpesa_atm.mocks.pg_tables import SCHEMA

    earlier = SCHEMA[: SCHEMA.index("-- The proxy's ledger")]
    with psycopg_module().connect(postgres_url, autocommit=True) as conn:
        conn.execute(earlier)
    store = open_store(postgres_url)
    try:
        traffic = Traffic()
        token = traffic.reference()
        found = observe(
            Ledger(store, SETTINGS), traffic.redemption(token, "a"), traffic.redemption(token, "b")
        )
        assert only(found).rule == "token_once"
    finally:
        store.close()


# The harness's own partners ---------------------------------------------------------------------

# What the lifecycles below send: fuzz's actions but the long reference (one exchange's check).
_MOCK_ACTIONS = [action for action in ACTIONS if action != "redeem_long_reference"]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_mocks_answers_give_no_finding_of_the_upstream(open_db, tmp_path, seed):
    """The bank and iPG mocks' rules (mocks/bank.py, mocks/ipg.py), which read the document as the
    harness does, answering random lifecycles of their tokens over days (fuzz's actions: redemptions
    with their own and other details, reversals with their own and another TransactionID, repeats,
    generations repeated): the ledger finds no break of theirs, only the client's reversals quoting
    another TransactionID."""
    rng = random.Random(seed)
    clock = [START]
    settings = Settings(db_path=str(tmp_path / "mocks.sqlite3"), clock=lambda: clock[0])
    upstream = open_store(settings.db_path)
    bank, ipg = BankRules(upstream, settings), IpgRules(upstream, settings)
    ledger = Ledger(open_db(), settings)
    count = 0

    def exchange(role: str, operation: str, request: dict[str, str], answer: dict[str, str]) -> Exchange:
        nonlocal count
        count += 1
        return Exchange(f"x{count}", role, operation, request, 200, answer, clock[0])  # type: ignore[arg-type]

    async def lifecycles() -> tuple[list[Finding], int]:
        found: list[Finding] = []
        wrong_reversals = 0
        for n in range(6):
            generation = {
                "input_CustomerMSISDN": f"24384333{n:04d}",
                "input_Amount": rng.choice(["200", "200.00", "75.5"]),
                "input_Currency": rng.choice(["CDF", "USD"]),
                "input_TransactionID": f"BVA{seed:03d}{n:03d}",
            }
            for _ in range(rng.randint(1, 2)):  # the iPG's retry: -3 with the first token
                answer = await bank.generate(generation)
                found += await ledger.observe(exchange("bank", "token_generation", generation, answer))
            token = answer["output_BankTransactionRef"]

            def issue(tx: Transaction, token: str = token, generation: dict[str, str] = generation) -> None:
                tx.add_ipg_token(
                    issued_token(
                        settings,
                        username="fnb",
                        bank_transaction_ref=token,
                        transaction_id=generation["input_TransactionID"],
                        msisdn=generation["input_CustomerMSISDN"],
                        amount=generation["input_Amount"],
                        currency=generation["input_Currency"],
                    )
                )

            await upstream.write(issue)
            base = {**DOCUMENT_REDEMPTION, "input_BankTransactionRef": token}
            base.update(
                {k: generation[k] for k in ("input_CustomerMSISDN", "input_Amount", "input_Currency")}
            )
            last: tuple[str, dict[str, str]] | None = None
            for step in range(rng.randint(4, 10)):
                clock[0] += timedelta(hours=rng.choice([0, 0, 1, 7, 30]))
                action = rng.choice(_MOCK_ACTIONS)
                if action == "replay" and last is not None:
                    operation, request = last
                else:
                    operation, request = _request(
                        action, base, generation["input_TransactionID"], f"{n}-{step}"
                    )
                    last = (operation, request)
                rules = ipg.redeem if operation == "token_redemption" else ipg.reverse
                answer = await rules(dict(request))
                found += await ledger.observe(exchange("ipg", operation, request, answer))
                if (
                    operation == "token_reversal"
                    and request["input_TransactionID"] != generation["input_TransactionID"]
                ):
                    wrong_reversals += 1
        return found, wrong_reversals

    try:
        found, wrong_reversals = asyncio.run(lifecycles())
    finally:
        upstream.close()
    assert [(f.rule, f.title, f.message) for f in found if f.side == "upstream"] == []
    assert Counter((f.rule, f.side) for f in found) == (
        {("reversal_transaction", "client"): wrong_reversals} if wrong_reversals else {}
    )


def _request(action: str, base: dict[str, str], transaction_id: str, tag: str) -> tuple[str, dict[str, str]]:
    """The request of one of fuzz's actions on the token of `base` (a redemption with its own details)."""
    request = {**base, "input_ThirdPartyReference": f"tpr-{tag}"}
    if action in ("reverse", "reverse_other_transaction", "replay"):
        quoted = transaction_id if action != "reverse_other_transaction" else "OTHER" + transaction_id
        return "token_reversal", {**request, "input_TransactionID": quoted}
    changed = {
        "redeem_other_amount": {"input_Amount": "999"},
        "redeem_other_msisdn": {"input_CustomerMSISDN": "243000000000"},
        "redeem_other_currency": {"input_Currency": "EUR"},
    }.get(action, {})
    return "token_redemption", {**request, **changed}
