"""What each part of the proxy's exchange costs, outside the forwarding (issue 25's speed goal): the
pieces of `ProxyApp._exchange` but `Upstream.post`, timed one by one in this process on a realistic
Token Generation (the proxy of the bank) and Token Redemption (the proxy of the iPG), each call unique
and valid and its answer the mock's `0`, as wrk sends them in `proxy.py`.

    python benchmarks/proxy_parts.py                 # both operations, 2,000 calls a piece, best of 5
    python benchmarks/proxy_parts.py --calls 500 --repeat 3 --operations token_generation

Prints microseconds of CPU a call for each piece (this process's CPU time: the other work of a busy
machine counts less than in wall time), and for the whole exchange through the app with an
upstream answering in process at once (`whole`: everything the proxy does a call but the HTTP of
either side), so that the pieces can be held against their sum. The store's pieces (the ledger's
transaction, the journal's write) are timed one call at a time, each its own commit, and ten at a
time, as ten connections share a turn of the event loop (`x10`, per call).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from mpesa_atm.codes import ResponseCode, bank_answer, ipg_answer
from mpesa_atm.mocks.storage import open_store
from mpesa_atm.operations import Role
from mpesa_atm.proxy.answers import parsed, text
from mpesa_atm.proxy.evidence import curl_of, line_of
from mpesa_atm.proxy.factory import create_proxy
from mpesa_atm.proxy.findings import Call
from mpesa_atm.proxy.forward import Answered, decoded
from mpesa_atm.proxy.journal import record_of
from mpesa_atm.proxy.judge import Seen
from mpesa_atm.proxy.ledger import Ledger
from mpesa_atm.settings import Settings

ROLES: dict[str, Role] = {"token_generation": "bank", "token_redemption": "ipg"}
_HEADERS = (
    ("host", "127.0.0.1:18002"),
    ("content-type", "application/json"),
    ("content-length", "0"),
)


def request_of(operation: str, n: int) -> bytes:
    """Call `n` of `operation` as load.py's Lua script writes it: unique and valid."""
    if operation == "token_generation":
        return (
            b'{"input_CustomerMSISDN":"243843330333","input_Amount":"200","input_Currency":"CDF",'
            b'"input_TransactionID":"%d"}' % n
        )
    return (
        b'{"input_Username":"fnb","input_Password":"P@ssword123","input_CustomerMSISDN":"243843330333",'
        b'"input_Currency":"CDF","input_BankShortcode":"49272","input_Amount":"200",'
        b'"input_ThirdPartyReference":"T%d","input_BankTransactionRef":"%d"}' % (n, n)
    )


def answer_of(operation: str, n: int, echoed: str | None = None) -> Answered:
    """The mock's answer 0 to call `n` (its input_ThirdPartyReference `echoed`, by default call `n`'s),
    with the headers uvicorn gives it."""
    if operation == "token_generation":
        body = bank_answer(
            ResponseCode.SUCCESS, bank_transaction_ref=uuid.uuid4().hex, bank_date_time="20261207 220000"
        )
    else:
        body = ipg_answer(
            ResponseCode.SUCCESS,
            insight_reference=f"MPESA{n:012d}",
            third_party_reference=f"T{n}" if echoed is None else echoed,
        )
    raw = orjson.dumps(body)
    headers = (
        ("date", "Mon, 07 Dec 2026 22:00:00 GMT"),
        ("server", "uvicorn"),
        ("content-type", "application/json"),
        ("content-length", str(len(raw))),
    )
    return Answered(200, "OK", headers, raw)


class InProcess:
    """An upstream that answers at once, in process: the app's whole exchange less the HTTP."""

    def __init__(self, operation: str, base_url: str, network: Any) -> None:
        self.operation = operation
        self.base_url = base_url
        self.network = network
        self.n = 10**9

    def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def url(self, path: str, query: str = "") -> str:
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    async def post(self, url: str, headers: Any, body: bytes) -> Answered:
        self.n += 1
        return answer_of(self.operation, self.n, text(parsed(body), "input_ThirdPartyReference"))


def best(times: list[float], calls: int) -> float:
    """Microseconds of CPU a call: the fastest of the repeats (the least disturbed by the machine)."""
    return min(times) / calls * 1e6


def timed(function: Callable[[int], Any], calls: int, repeat: int, start: int) -> tuple[float, float]:
    """(best, median) microseconds a call of `function(n)` over `calls` calls, `repeat` times."""
    runs = []
    for r in range(repeat):
        base = start + r * calls
        began = time.process_time()
        for n in range(base, base + calls):
            function(n)
        runs.append(time.process_time() - began)
    return best(runs, calls), statistics.median(runs) / calls * 1e6


def timed_async(
    loop: asyncio.AbstractEventLoop,
    function: Callable[[int], Awaitable[Any]],
    calls: int,
    repeat: int,
    start: int,
    together: int = 1,
) -> tuple[float, float]:
    """As `timed`, `together` calls at a time in one turn of the event loop."""

    async def runs() -> list[float]:
        times = []
        for r in range(repeat):
            base = start + r * calls
            began = time.process_time()
            for n in range(base, base + calls, together):
                await asyncio.gather(*(function(m) for m in range(n, n + together)))
            times.append(time.process_time() - began)
        return times

    times = loop.run_until_complete(runs())
    return best(times, calls), statistics.median(times) / calls * 1e6


def pieces(operation: str, folder: Path, calls: int, repeat: int) -> Iterator[tuple[str, float, float]]:
    role = ROLES[operation]
    settings = Settings(db_path=str(folder / f"{role}.sqlite3"))
    app = create_proxy(role, settings, upstream="http://127.0.0.1:18001", out=lambda line: None)
    judge, run = app.judge, app.run
    path = settings.paths[operation]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    counter = iter(range(10**6, 10**9, calls * repeat + 1))

    def next_start() -> int:
        return next(counter)

    def call_of(n: int) -> Call:
        body = request_of(operation, n)
        return Call(
            exchange_id=uuid.uuid4().hex,
            operation_id=operation,
            at=settings.clock(),
            started=time.perf_counter(),
            url=app.upstream.url(path, ""),
            label=f"POST {path}",
            headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in _scope_headers),
            body=body,
            request=parsed(body),
        )

    _scope_headers = [(n.encode(), v.encode()) for n, v in _HEADERS]
    yield "Call (uuid, url, headers, parsed request)", *timed(call_of, calls, repeat, next_start())

    sample = call_of(1)
    answered = answer_of(operation, 1)

    def seen_request(n: int) -> Seen:
        return Seen(operation, sample.headers, sample.body)

    yield (
        "Seen x2",
        *timed(
            lambda n: (
                seen_request(n),
                Seen(operation, sample.headers, sample.body, 200, answered.headers, answered.body, 0.001),
            ),
            calls,
            repeat,
            next_start(),
        ),
    )

    bodies = {}

    def seen_of(n: int) -> tuple[Seen, Seen]:
        found = bodies.get(n)
        if found is None:
            body, answer = request_of(operation, n), answer_of(operation, n)
            found = bodies[n] = (
                Seen(operation, sample.headers, body),
                Seen(operation, sample.headers, body, 200, answer.headers, answer.body, 0.001),
            )
        return found

    start = next_start()
    for n in range(start, start + calls * repeat):  # built beforehand: not what is timed
        seen_of(n)
    yield "Judge.case", *timed(lambda n: judge.case(seen_of(n)[0]), calls, repeat, start)
    cases = {n: judge.case(seen_of(n)[0]) for n in range(start, start + calls * repeat)}
    yield "Judge.client", *timed(lambda n: judge.client(seen_of(n)[0], cases[n], "x"), calls, repeat, start)
    yield (
        "Judge.upstream",
        *timed(lambda n: judge.upstream(seen_of(n)[1], cases[n], "x"), calls, repeat, start),
    )
    judged = judge.upstream(seen_of(start)[1], cases[start], "x")  # a realistic answer finds nothing
    assert not judged.findings, judged.findings
    yield (
        "decoded + parsed answer",
        *timed(lambda n: parsed(decoded(answered.body, answered.headers)), calls, repeat, next_start()),
    )
    yield (
        "Call.wire",
        *timed(
            lambda n: sample.wire(200, "OK", answered.headers, answered.body), calls, repeat, next_start()
        ),
    )
    answer = parsed(answered.body)
    wire = sample.wire(200, "OK", answered.headers, answered.body)

    store = open_store(
        settings.db_path, journal_limit=settings.journal_limit, busy_timeout=settings.busy_timeout
    )
    ledger = Ledger(store, settings)

    def exchange_of(n: int) -> Any:
        call = dataclasses.replace(
            sample, exchange_id=uuid.uuid4().hex, request=parsed(request_of(operation, n))
        )
        return call.exchange(role, 200, parsed(answer_of(operation, n).body), 0.001)

    start = next_start()
    exchanges = {n: exchange_of(n) for n in range(start, start + 2 * calls * repeat)}
    yield (
        "Ledger.observe (one a commit)",
        *timed_async(loop, lambda n: ledger.observe(exchanges[n]), calls, repeat, start),
    )
    yield (
        "Ledger.observe (x10 a commit)",
        *timed_async(
            loop, lambda n: ledger.observe(exchanges[n]), calls, repeat, start + calls * repeat, together=10
        ),
    )

    def record(n: int) -> Any:
        return record_of(
            role,
            exchange_id=sample.exchange_id,
            operation_id=operation,
            url=sample.url,
            request=sample.body,
            status=200,
            upstream_status=200,
            answer=answered.body,
            findings=(),
            milliseconds=1.234,
            secrets=app.secrets,
            fault=None,
        )

    yield "record_of", *timed(record, calls, repeat, next_start())
    kept = record(0)
    yield (
        "journal_in_next_write (one a commit)",
        *timed_async(loop, lambda n: store.journal_in_next_write(kept), calls, repeat, next_start()),
    )
    yield (
        "journal_in_next_write (x10 a commit)",
        *timed_async(
            loop, lambda n: store.journal_in_next_write(kept), calls, repeat, next_start(), together=10
        ),
    )
    at = sample.at
    yield (
        "Run.exchange",
        *timed(
            lambda n: run.exchange(
                wire,
                operation=sample.label,
                applied=judge.check_names,
                code=text(answer, "output_ResponseCode"),
                description=text(answer, "output_ResponseDesc"),
                findings=(),
                reproduce="",
                at=at,
            ),
            calls,
            repeat,
            next_start(),
        ),
    )
    yield (
        "line_of (+ text(parsed(answer)))",
        *timed(
            lambda n: line_of(
                at, role, sample.label, 200, text(parsed(answered.body), "output_ResponseCode"), 1.2, ()
            ),
            calls,
            repeat,
            next_start(),
        ),
    )
    yield (
        "curl_of (only with findings)",
        *timed(lambda n: curl_of(wire, sample.request, app.upstream.network), calls, repeat, next_start()),
    )
    store.close()
    loop.close()


def whole(operation: str, folder: Path, calls: int, repeat: int) -> tuple[float, float]:
    """The app's whole exchange (ASGI in, ASGI out) against an upstream answering in process."""
    role = ROLES[operation]
    settings = Settings(db_path=str(folder / f"whole-{role}.sqlite3"))
    from mpesa_atm.proxy.ledger import Ledger

    app = create_proxy(
        role, settings, upstream="http://127.0.0.1:18001", out=lambda line: None, ledger_of=Ledger
    )
    app.upstream = InProcess(operation, "http://127.0.0.1:18001", app.upstream.network)  # type: ignore[assignment]
    path = settings.paths[operation]
    loop = asyncio.new_event_loop()
    statuses: list[int] = []
    tasks: list[asyncio.Future[None]] = []

    async def lifespan() -> None:
        sent = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            return sent.pop(0) if sent else await asyncio.Event().wait()  # type: ignore[func-returns-value]

        async def send(message: dict[str, Any]) -> None:
            assert message["type"] == "lifespan.startup.complete", message

        tasks.append(asyncio.ensure_future(app({"type": "lifespan"}, receive, send)))  # type: ignore[arg-type]
        while app.store is None:
            await asyncio.sleep(0)

    async def one(n: int) -> None:
        body = request_of(operation, n)
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "headers": [
                (k.encode(), (str(len(body)) if k == "content-length" else v).encode()) for k, v in _HEADERS
            ],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)  # type: ignore[arg-type]

    loop.run_until_complete(lifespan())
    result = timed_async(loop, one, calls, repeat, 10**7, together=10)
    assert set(statuses) == {200}, set(statuses)
    assert not app.run.collector.findings(), app.run.collector.findings()[:1]
    if app.pruning is not None:
        loop.run_until_complete(app.pruning.stop())
    tasks[0].cancel()
    loop.run_until_complete(asyncio.sleep(0))
    app.store.close()
    loop.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls a repeat (default 2000)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is shown (default 5)")
    parser.add_argument("--operations", nargs="+", choices=sorted(ROLES), default=sorted(ROLES))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for operation in args.operations:
            print(f"{operation} ({ROLES[operation]} proxy), us a call: best, median of {args.repeat}")
            for name, low, middle in pieces(operation, folder, args.calls, args.repeat):
                print(f"  {name:<40} {low:8.1f} {middle:8.1f}")
            low, middle = whole(operation, folder, args.calls, args.repeat)
            print(f"  {'whole exchange, x10 (upstream in process)':<40} {low:8.1f} {middle:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
