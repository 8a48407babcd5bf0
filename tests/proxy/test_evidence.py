"""A run handed over by workers (evidence.Run's hand_off, HandOff, take) makes the same evidence as one
run told every exchange itself: the same count, checks exercised, findings and exit code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mpesa_atm.fuzz.bounds import Bounds
from mpesa_atm.fuzz.results import CampaignResult
from mpesa_atm.proxy.evidence import HandOff, Run
from mpesa_atm.proxy.findings import Finding
from mpesa_atm.reporting.exchange import Exchange as WireExchange

_CHECKS = ("request_schema_conformance", "json_envelope")
_START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _run(hand_off: Path | None = None, *, checks: tuple[str, ...] = _CHECKS, wires: bool = True) -> Run:
    return Run(
        "bank",
        "http://bank.test",
        checks=checks,
        operations=["POST /token-generation"],
        strict=False,
        bounds=Bounds(),
        hand_off=hand_off,
        wires=wires,
    )


def _tell(run: Run, second: int, code: str, findings: tuple[Finding, ...] = ()) -> None:
    at = _START + timedelta(seconds=second)
    wire = WireExchange(at, 0.01, "POST", "http://bank.test/token-generation", (), b"{}", 200)
    run.exchange(
        wire,
        operation="POST /token-generation",
        applied=_CHECKS,
        code=code,
        description=None,
        findings=findings,
        reproduce="curl http://bank.test/token-generation" if findings else "",
        at=at,
    )


_REPEAT = Finding(
    rule="duplicate",
    check="replay_is_duplicate",
    side="upstream",
    title="A repeat was answered 0",
    message="Received: 0\nDocumented: -3",
    exchange_ids=("a", "b"),
)


def _evidence(result: CampaignResult) -> tuple[object, ...]:
    return (
        result.cases,
        result.requests,
        result.checks,
        result.exercised,
        [(f.check, f.severity, f.occurrences, f.reproduce) for f in result.findings],
        result.exit_code,
    )


def test_the_workers_hand_off_makes_the_evidence_one_run_makes(tmp_path: Path) -> None:
    one = _run()
    for second, code, findings in ((0, "0", ()), (1, "0", (_REPEAT,)), (2, "-1", ())):
        _tell(one, second, code, findings)
    first, second = _run(tmp_path / "w1.pickle", wires=False), _run(tmp_path / "w2.pickle", wires=False)
    _tell(first, 0, "0")
    _tell(second, 1, "0", (_REPEAT,))  # a check of the ledger's no run foresaw: added as in one run
    _tell(first, 2, "-1")
    for worker in (first, second):
        worker.close()
    handed = [HandOff.read(tmp_path / name) for name in ("w1.pickle", "w2.pickle")]
    assert [len(h.told) for h in handed] == [2, 1]
    assert all(told.wire is None and told.status == 200 for h in handed for told in h.told)
    main = _run(checks=())
    main.take(handed)
    together, alone = main.finish(), one.finish()
    assert _evidence(together) == _evidence(alone)
    assert together.cases == 3 and together.exit_code == 1
    assert [f.check for f in together.findings] == ["replay_is_duplicate"]


def test_a_worker_that_saw_nothing_hands_over_nothing_and_no_workers_exchange_is_no_pass(
    tmp_path: Path,
) -> None:
    worker = _run(tmp_path / "w.pickle")
    worker.close()
    handed = HandOff.read(tmp_path / "w.pickle")
    assert handed.told == () and handed.checks[: len(_CHECKS)] == _CHECKS
    assert not list(tmp_path.glob("*.partial"))
    main = _run(checks=())
    main.take([handed])
    assert main.finish().exit_code == 2  # nothing went through any worker


def test_a_long_run_keeps_next_to_nothing_an_exchange() -> None:
    """A proxy left in front of a UAT for days tells its run of millions of exchanges: without --har
    or --report, the run keeps a count and a reference an exchange, not a case's record each."""
    import gc
    import tracemalloc

    run = _run()
    for second in range(100):  # the first of each kind made, and the lists grown past their start
        _tell(run, second, "0")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for second in range(2_000):
            _tell(run, second, "0")
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert run.result.cases == 2_100
    assert grown / 2_000 < 24, f"{grown / 2_000:.1f} bytes kept an exchange"
