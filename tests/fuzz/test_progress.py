"""A campaign shows every phase's progress as it goes: cases sent of planned, every request counted,
findings, time spent and left; a line every few seconds in a log, one line rewritten on a terminal."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpesa_atm.fuzz import ConsoleReporter, RequestSent, Target, UnitProgress, run_campaign
from mpesa_atm.fuzz.report import render_progress
from tests.fuzz.lenient import Partner, _handler, serving_handler

_LATE = 0.1  # seconds each answer of the slow partner waits: ~200 requests make a 20 s boundary phase
_SILENCE = 10.0  # the longest a log may go without a line


@pytest.fixture
def slow_bank() -> Iterator[str]:
    """A correct bank (lenient.Partner) that answers every request _LATE seconds late."""
    handler = _handler(Partner("bank"))

    class Late(handler):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:
            time.sleep(_LATE)  # the partner's own slowness, not a wait of the test's
            super().do_POST()

    with serving_handler(Late) as url:
        yield url


def _lines_as_they_come(process: subprocess.Popen[str]) -> list[tuple[float, str]]:
    """Each line of the process's stdout with when it arrived, until it ends."""
    assert process.stdout is not None
    arrived = []
    for line in process.stdout:
        arrived.append((time.monotonic(), line.rstrip("\n")))
    return arrived


@pytest.mark.network
def test_a_campaign_against_a_slow_partner_is_never_silent_and_counts_every_request(slow_bank, tmp_path):
    har = tmp_path / "campaign.har"
    command = [sys.executable, "-m", "mpesa_atm", "fuzz", "bank", "--url", slow_bank, "--max-examples", "2"]
    started = time.monotonic()
    with subprocess.Popen(
        [*command, "--seed", "1", "--har", str(har)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        arrived = _lines_as_they_come(process)
        _, errors = process.communicate()

    assert process.returncode == 0, errors
    times = [started, *(when for when, _ in arrived)]
    silences = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(silences) <= _SILENCE, [line for _, line in arrived]
    text = [line for _, line in arrived]
    ended = {}  # each phase's last line: "  POST /token-generation edges: 6/6 cases (7 requests), ..."
    for line in text:
        if line.startswith("  POST /token-generation "):
            phase, counts = line.removeprefix("  POST /token-generation ").split(": ", 1)
            ended[phase] = counts
    assert list(ended) == ["edges", "boundaries", "realistic", "positive"], text  # 2 examples: 1 and 1
    done = [counts.split(" cases", 1)[0].split("/") for counts in ended.values()]
    assert all(sent == planned for sent, planned in done), text
    requests = sum(int(counts.split("(", 1)[1].split(" request", 1)[0]) for counts in ended.values())
    entries = json.loads(har.read_text())["log"]["entries"]
    assert requests == len(entries)
    assert f"{sum(int(sent) for sent, _ in done)} cases ({len(entries)} requests)" in text[-1]


@pytest.mark.network
def test_a_phase_waiting_for_a_late_answer_still_reports_its_progress():
    handler = _handler(Partner("bank"))
    hung = threading.Event()

    class FirstLate(handler):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:
            if not hung.is_set():
                hung.set()
                time.sleep(3.5)  # the partner's own slowness: its first answer comes 3.5 s late
            super().do_POST()

    seen: list[tuple[float, object]] = []
    with serving_handler(FirstLate) as url:
        run_campaign(
            Target("bank", url=url),
            max_examples=1,
            seed=1,
            listeners=[lambda event: seen.append((time.monotonic(), event))],
        )

    first_answer = next(when for when, event in seen if isinstance(event, RequestSent))
    waiting = [e for when, e in seen if when < first_answer and isinstance(e, UnitProgress)]
    assert [(e.phase, e.requests) for e in waiting][:4] == [("edges", 0)] * 4
    assert waiting[-1].elapsed >= 3.0


def _progress(done: int, elapsed: float, finished: bool = False) -> UnitProgress:
    return UnitProgress("POST /token-generation", "boundaries", done, 40, done * 2, 0, elapsed, finished)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_of_the_phase_under_way_every_few_seconds_and_one_as_it_ends():
    out, clock = io.StringIO(), _Clock()
    console = ConsoleReporter(out, live=False, every=5.0, clock=clock)

    for done in range(1, 40):
        clock.now += 0.5  # a case every half second
        console(_progress(done, done * 0.5))
    console(_progress(40, 20.0, finished=True))

    lines = out.getvalue().splitlines()
    assert lines == [
        "  POST /token-generation boundaries: 10/40 cases (20 requests), 5.0 s, about 15 s left",
        "  POST /token-generation boundaries: 20/40 cases (40 requests), 10.0 s, about 10 s left",
        "  POST /token-generation boundaries: 30/40 cases (60 requests), 15.0 s, about 5 s left",
        "  POST /token-generation boundaries: 40/40 cases (80 requests), 20.0 s",
    ]


def test_a_terminal_gets_one_line_per_phase_rewritten_in_place(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")  # shutil.get_terminal_size reads it first
    out, clock = io.StringIO(), _Clock()
    console = ConsoleReporter(out, live=True, clock=clock)

    for done in range(1, 4):
        clock.now += 1
        console(_progress(done, done))
    console(_progress(3, 3, finished=True))

    written = out.getvalue()
    assert written.count("\n") == 1 and written.endswith("3/40 cases (6 requests), 3.0 s\x1b[K\n")
    assert written.count("\r") == 4
    # A line under way is cut to the terminal's width, so that \r rewrites all of it; the last is whole.
    drawn = [segment.removesuffix("\x1b[K") for segment in written.split("\r")[1:-1]]
    assert drawn and all(len(segment) == 49 for segment in drawn)


def test_the_lifecycles_count_lifecycles_and_cases_and_the_estimate_waits_for_a_pace():
    lifecycles = UnitProgress(
        "token lifecycle", "lifecycles", 2, 10, 30, 1, 4.0, counted="lifecycles", cases=25
    )

    assert render_progress(lifecycles) == (
        "token lifecycle lifecycles: 2/10 lifecycles, 25 cases (30 requests), 1 finding so far, 4.0 s"
    )
    assert lifecycles.left() is None  # two lifecycles are no pace yet
    assert UnitProgress("u", "p", 3, 10, 3, 0, 6.0).left() == pytest.approx(14.0)


def test_progress_is_documented_as_the_console_prints_it():
    page = (Path(__file__).parents[2] / "docs" / "fuzzing.md").read_text()
    assert "POST /token-generation boundaries: " in page
