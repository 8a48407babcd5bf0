"""Several `mpesa-atm serve` instances on one PostgreSQL database behave as one sandbox (issue 16):
one success per duplicate set across all of them, a token made through one used through another,
counted fault rules firing once in all, modes seen by every instance within a second, one journal,
and an instance killed under load losing no acknowledged write while the other keeps serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid

import httpx
import psutil
import pytest

from mpesa_atm.cli import main
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.postgres import psycopg_module
from tests.fixtures.servers import Served, wait_for
from tests.fixtures.tokens import seed_token

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def started_pair(serve_for_module, postgres_server) -> tuple[Served, Served]:
    """Two instances of both mocks, 2 workers each, on one PostgreSQL database, for the module."""
    db = postgres_server.url(postgres_server.create_database())
    return serve_for_module("--workers", "2", db_path=db), serve_for_module("--workers", "2", db_path=db)


# A call told to fail by its header: answered -2 unless the worker is offline (-8), and never processed
# nor counted against a fault rule (the header comes before the rules), so it shows a worker's modes.
PROBE = {"X-Mpesa-Atm-Fault": "response_code=-2"}
PROBE_BODIES = {"ipg": DOCUMENT_REDEMPTION, "bank": DOCUMENT_GENERATION}
PROBE_PATHS = {"ipg": "/token-redemption", "bank": "/token-generation"}


def _probed(instances: tuple[Served, ...], role: str) -> set[str]:
    """The codes a probe answered, 8 probes a `role` mock of each instance, each on a connection of
    its own (so that every worker gets some)."""
    calls = [(f"{served.urls[role]}{PROBE_PATHS[role]}", PROBE_BODIES[role]) for served in instances] * 8
    return {answer["output_ResponseCode"] for answer in asyncio.run(_post_all(calls, headers=PROBE))}


def _wait_for_every_worker(instances: tuple[Served, ...], role: str, code: str, what: str) -> None:
    """Until every worker of the `role` mocks answers a probe `code`: each has read the shared config
    version (every 0.2 s) past the change that made it so."""
    wait_for(lambda: _probed(instances, role) == {code}, f"{what} in every worker of the {role} mocks")


def _reset(instances: tuple[Served, ...]) -> None:
    for role in ("ipg", "bank"):
        url = instances[0].urls[role]
        assert httpx.post(f"{url}/_harness/reset", timeout=10).status_code == 200


@pytest.fixture
def two_instances(started_pair):
    """The module's two instances, both mocks reset (tokens, rules, modes, journal) and the reset seen
    by every worker of both (a worker left offline by a test answers -8 until it reads it)."""
    _reset(started_pair)
    for role in ("ipg", "bank"):
        _wait_for_every_worker(started_pair, role, "-2", "the reset seen")
    # Again, for the probes' journal entries: what a worker holds of rules and modes is the same
    # (none) before and after this reset, so it has nothing more to wait for.
    _reset(started_pair)
    return started_pair


async def _post_all(
    calls: list[tuple[str, dict[str, str]]], headers: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """Every call at once, each on a connection of its own (so that every worker gets some)."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        answers = await asyncio.gather(*(client.post(url, json=body, headers=headers) for url, body in calls))
    return [answer.json() for answer in answers]


def test_identical_token_generations_over_two_instances_succeed_once(two_instances):
    first, second = two_instances
    calls = [
        (f"{served.bank_url}/token-generation", DOCUMENT_GENERATION)
        for _ in range(20)
        for served in (first, second)
    ]
    answers = asyncio.run(_post_all(calls))
    codes = sorted(answer["output_ResponseCode"] for answer in answers)
    assert codes == ["-3"] * 39 + ["0"], codes
    assert len({answer["output_BankTransactionRef"] for answer in answers}) == 1
    assert len({answer["output_BankDateTime"] for answer in answers}) == 1


def test_a_token_seeded_through_one_instance_is_redeemed_once_through_another(two_instances):
    first, second = two_instances
    seed_token(first.ipg_url)
    redeemed = httpx.post(f"{second.ipg_url}/token-redemption", json=DOCUMENT_REDEMPTION, timeout=10).json()
    assert redeemed["output_ResponseCode"] == "0", redeemed
    again = httpx.post(f"{first.ipg_url}/token-redemption", json=DOCUMENT_REDEMPTION, timeout=10).json()
    assert (again["output_ResponseCode"], again["output_InsightReference"]) == (
        "-3",
        redeemed["output_InsightReference"],
    )
    other = {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "another-reference-001"}
    refused = httpx.post(f"{first.ipg_url}/token-redemption", json=other, timeout=10).json()
    assert refused["output_ResponseCode"] == "-1"  # the token was already redeemed


def test_concurrent_redemptions_of_one_token_over_two_instances_pay_once(two_instances):
    first, second = two_instances
    seed_token(first.ipg_url)
    repeats = [(f"{served.ipg_url}/token-redemption", DOCUMENT_REDEMPTION) for served in (first, second)] * 10
    others = [
        (
            f"{served.ipg_url}/token-redemption",
            {**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": f"other{i}"},
        )
        for i, served in enumerate((first, second) * 5)
    ]
    answers = asyncio.run(_post_all(repeats + others))
    paid = [answer for answer in answers if answer["output_ResponseCode"] == "0"]
    assert len(paid) == 1, answers
    for answer in answers[: len(repeats)]:
        if answer["output_ResponseCode"] == "-3":  # a repeat of the one paid: its reference
            assert answer["output_InsightReference"] == paid[0]["output_InsightReference"]
    assert {answer["output_ResponseCode"] for answer in answers} <= {"0", "-3", "-1"}


def test_a_fault_rule_counted_once_fires_once_in_all_instances(two_instances):
    first, second = two_instances
    rule = httpx.post(
        f"{first.bank_url}/_harness/faults",
        json={"operation": "token_generation", "response_code": "-7", "times": 1},
        timeout=10,
    )
    assert rule.status_code == 201, rule.text
    # Every worker of both instances reads the rule before the calls. A call would spend it, a probe
    # does not see it: offline and back, each seen by every worker, come after it in the shared version.
    modes = f"{first.bank_url}/_harness/modes"
    assert httpx.put(modes, json={"offline": True}, timeout=10).status_code == 200
    _wait_for_every_worker(two_instances, "bank", "-8", "offline")
    assert httpx.put(modes, json={"offline": False}, timeout=10).status_code == 200
    _wait_for_every_worker(two_instances, "bank", "-2", "back online")
    calls = [
        (f"{served.bank_url}/token-generation", {**DOCUMENT_GENERATION, "input_TransactionID": f"T{i:05d}"})
        for i, served in enumerate((first, second) * 10)
    ]
    answers = asyncio.run(_post_all(calls))
    codes = sorted(answer["output_ResponseCode"] for answer in answers)
    assert codes == ["-7"] + ["0"] * 19, codes
    listed = httpx.get(f"{second.bank_url}/_harness/faults", timeout=10).json()["faults"]
    assert [rule["remaining"] for rule in listed] == [0]


def test_modes_set_through_one_instance_hold_in_every_instance_within_a_second(two_instances):
    first, second = two_instances
    changed = httpx.put(f"{first.bank_url}/_harness/modes", json={"offline": True}, timeout=10)
    assert changed.status_code == 200, changed.text
    calls = [
        (f"{served.bank_url}/token-generation", {**DOCUMENT_GENERATION, "input_TransactionID": f"M{i:05d}"})
        for i, served in enumerate((first, second) * 10)
    ]
    # Calls until every one is answered offline: the last round sent within the second passes.
    wait_for(
        lambda: {answer["output_ResponseCode"] for answer in asyncio.run(_post_all(calls))} == {"-8"},
        "offline in every instance",
        timeout=1.0,
    )


def test_the_journal_of_any_instance_shows_every_instances_calls(two_instances):
    first, second = two_instances
    for i, served in enumerate((first, second, first, second)):
        body = {**DOCUMENT_GENERATION, "input_TransactionID": f"J{i:05d}"}
        assert httpx.post(f"{served.bank_url}/token-generation", json=body, timeout=10).status_code == 200
    for served in (first, second):
        entries = httpx.get(f"{served.bank_url}/_harness/journal", timeout=10).json()["entries"]
        assert [entry["request"]["input_TransactionID"] for entry in entries] == [
            "J00003",
            "J00002",
            "J00001",
            "J00000",
        ]


def test_a_body_with_a_nul_byte_is_refused_and_journalled_beside_the_valid_calls_of_its_turn(two_instances):
    """PostgreSQL's text holds no NUL byte: a refused body carrying one was a 500 for it and for every
    call whose journal entry shared its write."""
    url = f"{two_instances[0].bank_url}/token-generation"
    bodies = [b'{"input_TransactionID": "\x00"}'] + [
        json.dumps({**DOCUMENT_GENERATION, "input_TransactionID": f"NUL{i:04d}"}).encode() for i in range(6)
    ]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = {"Content-Type": "application/json"}
            return await asyncio.gather(*(client.post(url, content=body, headers=headers) for body in bodies))

    answers = asyncio.run(send_all())
    assert [answer.status_code for answer in answers] == [400] + [200] * 6, [a.text for a in answers]
    assert [answer.json()["output_ResponseCode"] for answer in answers] == ["-1"] + ["0"] * 6
    entries = httpx.get(f"{two_instances[0].bank_url}/_harness/journal", timeout=10).json()["entries"]
    assert "\x00" in next(entry["request"] for entry in entries if entry["status"] == 400)
    assert len(entries) == 7


@pytest.mark.parametrize("role", ["ipg", "bank"])
def test_a_fuzz_campaign_finds_nothing_in_mocks_on_the_shared_store(two_instances, role, capsys):
    """The fuzzer's hostile and boundary cases against a mock on PostgreSQL, whose text and numbers
    refuse what SQLite takes (it found the NUL byte above)."""
    code = main(["fuzz", role, "--url", two_instances[0].urls[role], "--max-examples", "10", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0, out


def test_killing_one_instance_under_load_loses_no_acknowledged_write(serve, postgres_url):
    first, second = (serve("--workers", "2", role="bank", db_path=postgres_url) for _ in range(2))
    acknowledged: list[tuple[dict[str, str], str]] = []
    refused_after_kill = 0
    killed = threading.Event()

    async def load(served: Served, seconds: float) -> None:
        nonlocal refused_after_kill
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=6)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:

            async def sender() -> None:
                nonlocal refused_after_kill
                while time.monotonic() < deadline:
                    body = {**DOCUMENT_GENERATION, "input_TransactionID": uuid.uuid4().hex[:20]}
                    try:
                        answer = (await client.post(f"{served.bank_url}/token-generation", json=body)).json()
                    except httpx.TransportError:  # the killed instance: no answer, nothing acknowledged
                        assert killed.is_set()
                        refused_after_kill += 1
                        await asyncio.sleep(0.01)
                        continue
                    if answer["output_ResponseCode"] == "0":
                        acknowledged.append((body, answer["output_BankTransactionRef"]))

            await asyncio.gather(*(sender() for _ in range(6)))

    async def both() -> None:
        loads = asyncio.gather(load(first, 4.0), load(second, 4.0))
        await asyncio.sleep(2.0)
        killed.set()
        os.killpg(first.process.pid, signal.SIGKILL)  # serve, its role process and its workers
        await loads

    asyncio.run(both())
    served_after = [body for body, _ in acknowledged]
    assert len(served_after) > 100 and refused_after_kill > 0, (len(served_after), refused_after_kill)

    async def replay_all() -> list[tuple[str, dict[str, str]]]:
        async with httpx.AsyncClient(timeout=30) as client:
            wrong = []
            for body, reference in acknowledged:
                answer = (await client.post(f"{second.bank_url}/token-generation", json=body)).json()
                if (answer["output_ResponseCode"], answer["output_BankTransactionRef"]) != ("-3", reference):
                    wrong.append((reference, answer))
            return wrong

    assert asyncio.run(replay_all()) == []
    # And the other instance still serves new calls.
    fresh = {**DOCUMENT_GENERATION, "input_TransactionID": "AFTERTHEKILL01"}
    assert (
        httpx.post(f"{second.bank_url}/token-generation", json=fresh, timeout=10).json()[
            "output_ResponseCode"
        ]
        == "0"
    )


def test_a_database_out_of_reach_is_answered_minus_7_in_the_envelope_never_a_500(
    serve, postgres_server, tmp_path
):
    name = postgres_server.create_database()
    config = tmp_path / "busy.toml"
    config.write_text("busy_timeout = 0.5\n")
    served = serve("--workers", "2", "--config", str(config), role="bank", db_path=postgres_server.url(name))
    url = f"{served.bank_url}/token-generation"
    assert httpx.post(url, json=DOCUMENT_GENERATION, timeout=10).json()["output_ResponseCode"] == "0"
    postgres_server.drop_database(name)  # every connection ended, and none can be made again

    calls = [(url, {**DOCUMENT_GENERATION, "input_TransactionID": f"GONE{i:05d}"}) for i in range(8)]
    answers = asyncio.run(_post_all(calls))  # _post_all reads each body as JSON: an envelope, or it fails
    assert {answer["output_ResponseCode"] for answer in answers} == {"-7"}, answers
    assert all("out of reach" in answer["output_ResponseDesc"] for answer in answers)
    assert httpx.get(f"{served.bank_url}/_harness/health", timeout=10).status_code == 200


def _workers(served: Served) -> set[int]:
    """The uvicorn workers of a one-role `serve` (spawned children; not the resource tracker)."""
    workers = set()
    for child in psutil.Process(served.process.pid).children():
        try:  # a worker just killed and not yet reaped is a zombie, whose command line is gone
            if "spawn_main" in " ".join(child.cmdline()):
                workers.add(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return workers


def test_a_worker_started_while_the_database_is_out_of_reach_serves_minus_7_and_heals_with_it(
    serve, postgres_server, tmp_path
):
    """uvicorn stops every worker of a mock when one fails to start: a worker replaced while
    PostgreSQL is out of reach must start anyway, answer -7 meanwhile, and serve once it is back."""
    name = postgres_server.create_database()
    config = tmp_path / "busy.toml"
    config.write_text("busy_timeout = 0.5\n")
    served = serve("--workers", "2", "--config", str(config), role="bank", db_path=postgres_server.url(name))
    url = f"{served.bank_url}/token-generation"
    wait_for(lambda: len(_workers(served)) == 2, "two workers")
    with psycopg_module().connect(postgres_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        killed = min(_workers(served))
        os.kill(killed, signal.SIGKILL)
        started = "out of reach as this worker starts"
        wait_for(lambda: served.process.poll() is not None or started in served.log(), "a replacement worker")
        assert served.process.poll() is None, f"the mock stopped:\n{served.log()}"
        calls = [(url, {**DOCUMENT_GENERATION, "input_TransactionID": f"AWAY{i:05d}"}) for i in range(8)]
        answers = asyncio.run(_post_all(calls))
        assert {answer["output_ResponseCode"] for answer in answers} == {"-7"}, answers
        assert served.process.poll() is None, served.log()
        assert len(_workers(served)) == 2 and killed not in _workers(served)
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")

    def healed() -> bool:
        fresh = [{**DOCUMENT_GENERATION, "input_TransactionID": uuid.uuid4().hex[:20]} for _ in range(8)]
        calls = [(url, body) for body in fresh]
        return {answer["output_ResponseCode"] for answer in asyncio.run(_post_all(calls))} == {"0"}

    wait_for(healed, "every worker answering 0 once the database is back")
