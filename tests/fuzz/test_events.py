"""A campaign is a stream of events: the collector folds them into the result, the reporters print and
write them, and a listener of run_campaign sees them all in order."""

from __future__ import annotations

import io

from mpesa_atm.fuzz import (
    CampaignFinished,
    CampaignResult,
    CampaignStarted,
    CaseChecked,
    CaseSent,
    ConsoleReporter,
    Finding,
    FindingFound,
    Note,
    RequestSent,
    SentCase,
    Target,
    UnitProgress,
    run_campaign,
)
from mpesa_atm.fuzz.collector import Collector


def _result() -> CampaignResult:
    return CampaignResult(
        role="bank",
        target="http://bank.test",
        seed=7,
        max_examples=4,
        checks=("json_envelope",),
        operations=("POST /token-generation",),
        phases=("fuzz",),
        harness=False,
    )


def _finding(check: str = "json_envelope") -> Finding:
    return Finding(
        check, "POST /token-generation", "fuzz", "The answer is not a JSON object", "Received: x", ()
    )


def test_collector_counts_cases_and_requests_and_merges_findings_of_one_check():
    result = _result()
    seen = []
    collector = Collector(result, [seen.append])

    collector.emit(RequestSent())
    collector.emit(CaseSent(SentCase("POST /token-generation", "fuzz", "edge", {})))
    collector.emit(RequestSent())
    collector.emit(FindingFound(_finding()))
    collector.emit(FindingFound(_finding()))
    collector.emit(FindingFound(_finding("mapped_response_code")))
    collector.progress(UnitProgress("POST /token-generation", "edges", 1, 6, 2, 0, 0.5))
    collector.emit(Note("a note"))

    assert (result.requests, result.cases, result.notes) == (2, 1, ["a note"])
    assert [(f.check, f.occurrences) for f in collector.findings()] == [
        ("json_envelope", 2),
        ("mapped_response_code", 1),
    ]
    assert seen[-2] == UnitProgress("POST /token-generation", "edges", 1, 6, 2, findings=2, elapsed=0.5)
    assert len(seen) == 8


def test_console_reporter_prints_the_start_progress_notes_findings_and_summary():
    out = io.StringIO()
    console = ConsoleReporter(out, live=False)
    result = _result()
    result.cases, result.requests, result.notes, result.findings = 4, 9, ["a note"], [_finding()]

    console(CampaignStarted("bank", "http://bank.test", 7, 4))
    console(UnitProgress("POST /token-generation", "realistic", 4, 4, 9, 1, 2.25, finished=True))
    console(CaseSent(SentCase("POST /token-generation", "fuzz", "edge", {})))
    console(CampaignFinished(result))

    assert out.getvalue().splitlines() == [
        "mpesa-atm fuzz bank: http://bank.test, 4 examples per operation, seed 7",
        "  POST /token-generation realistic: 4/4 cases (9 requests), 1 finding so far, 2.2 s",
        "  note: a note",
        "",
        "FAILED json_envelope: POST /token-generation (fuzz)",
        "  The answer is not a JSON object",
        "  Received: x",
        "",
        "mpesa-atm fuzz bank: FAILED: 1 failure (json_envelope); 4 cases (9 requests) in 0.0 s; seed 7",
    ]


def test_a_listener_sees_the_whole_campaign_in_order_and_progress_still_works(mocks):
    events = []
    progress = []

    result = run_campaign(
        Target("bank", app=mocks.bank_app),
        max_examples=4,
        seed=1,
        listeners=[events.append],
        progress=progress.append,
    )

    started = events[0]
    assert isinstance(started, CampaignStarted)
    assert (started.role, started.target, started.seed, started.max_examples) == (
        "bank",
        "the app in process",
        1,
        4,
    )
    assert ("workers", "1") in started.options
    assert events[-1] == CampaignFinished(result)
    assert sum(isinstance(e, CaseSent) for e in events) == result.cases == len(result.sent)
    requests = [e for e in events if isinstance(e, RequestSent)]
    assert len(requests) == result.requests
    # Each request carries its exchange: what was sent, what came back, how long it took.
    assert all(e.exchange is not None and e.exchange.status is not None for e in requests)
    api = [e.exchange for e in requests if e.exchange and e.exchange.label == "POST /token-generation"]
    assert api and all(e.method == "POST" and e.elapsed > 0 and e.response_body for e in api)
    # Each case's answer went through the checks; those that applied are counted.
    checked = [e for e in events if isinstance(e, CaseChecked)]
    assert len(checked) == result.cases
    assert result.exercised["not_a_server_error"] == result.cases
    assert 0 < result.exercised.get("negative_data_rejection", 0) < result.cases
    assert progress == [e for e in events if isinstance(e, UnitProgress)]
    # Each phase says how far it got as it ends; together they count every case and request.
    ended = [e for e in progress if e.finished]
    assert [e.phase for e in ended] == ["edges", "boundaries", "realistic", "positive", "negative"]
    assert [(e.done, e.planned) for e in ended[2:]] == [(2, 2), (1, 1), (1, 1)]
    assert ended[0].done == ended[0].planned == 6
    assert sum(e.done for e in ended) == result.cases
    assert sum(e.requests for e in ended) == result.requests
