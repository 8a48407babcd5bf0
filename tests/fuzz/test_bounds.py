"""Bounds on a campaign, with Schemathesis's names: --max-failures stops it after so many failures,
--max-time ends it at a deadline, --max-response-time fails an answer slower than a limit. Against a
correct partner that answers 0.3 s late, and the broken partners."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mpesa_atm.errors import UsageError
from mpesa_atm.fuzz import Target, run_campaign
from mpesa_atm.fuzz.bounds import Bounds, Stopper
from mpesa_atm.fuzz.page import HtmlReporter
from mpesa_atm.judgement import FAILURE, RULES
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from tests.fuzz import lenient
from tests.fuzz.partners import BROKEN

LATE = 0.3  # seconds the slow partner takes over each answer, as real partners' UATs do


@contextmanager
def slow_partner(role: str = "bank") -> Iterator[str]:
    """A correct partner (lenient.Partner) that answers every request LATE seconds late; its URL."""
    partner = lenient.Partner(role)

    class Slow(lenient._handler(partner)):  # type: ignore[misc]
        def do_POST(self) -> None:
            time.sleep(LATE)  # the partner's own latency
            super().do_POST()

        def do_GET(self) -> None:
            time.sleep(LATE)
            super().do_GET()

    with lenient.serving_handler(Slow) as url:
        yield url


def fuzz(*arguments: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], float]:
    """`mpesa-atm fuzz ...` in a process of its own, and how long it took (seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "fuzz", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def junit_properties(path: Any) -> dict[str | None, str | None]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return {p.get("name"): p.get("value") for p in suite.iter("property")}


@pytest.mark.network
def test_max_time_ends_a_campaign_against_a_slow_partner_at_its_deadline(tmp_path):
    junit, page = tmp_path / "fuzz.xml", tmp_path / "fuzz.html"
    with slow_partner() as url:
        # 100000 examples a operation would take days at 0.3 s an answer.
        done, took = fuzz(
            "bank", "--url", url, "--seed", "1", "--max-examples", "100000", "--max-time", "3",
            "--junit-xml", str(junit), "--report", str(page),
        )  # fmt: skip

    summary = done.stdout.rstrip().splitlines()[-1]
    # The campaign: its deadline, plus the case under way (an answer and its replays, 0.3 s each).
    campaign = float(re.search(r" in (\d+\.\d) s; seed 1$", summary)[1])  # type: ignore[index]
    assert 3 <= campaign < 3 + 2, summary
    # The command: the interpreter's start and the reports besides (4.5 s here, unloaded).
    assert took < 3 + 10, (took, done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr  # a correct partner: no failure
    # Its warnings are its readings of what the document leaves open.
    stopped = re.escape("; stopped early at its deadline (--max-time 3 s); ")
    assert re.match(rf"mpesa-atm fuzz bank: PASSED: [^;]*{stopped}\d+ checks? not reached \(", summary), (
        summary
    )
    properties = junit_properties(junit)
    assert properties["bounds"] == "max time 3 s"
    assert properties["stopped"] == "at its deadline (--max-time 3 s)"
    assert "not reached: the campaign stopped at its deadline (--max-time 3 s)" in junit.read_text()
    assert "max time 3 s; stopped at its deadline (--max-time 3 s)" in page.read_text()


@pytest.mark.network
def test_a_deadline_before_any_check_was_exercised_is_not_tested(tmp_path):
    with slow_partner() as url:
        # Its first answer (to the look for a control API) comes after the deadline.
        done, _ = fuzz("bank", "--url", url, "--seed", "1", "--max-time", "0.1")

    summary = done.stdout.rstrip().splitlines()[-1]
    assert done.returncode == 2, done.stdout + done.stderr
    assert summary.startswith(
        "mpesa-atm fuzz bank: NOT TESTED: the campaign stopped at its deadline (--max-time 0.1 s) before any "
        "check was exercised; 0 cases"
    ), summary


@pytest.mark.network
def test_max_response_time_fails_the_slow_partner_naming_the_check_and_the_time(tmp_path):
    junit = tmp_path / "fuzz.xml"
    with slow_partner() as url:
        done, _ = fuzz(
            "bank", "--url", url, "--seed", "1", "--max-examples", "5", "--max-response-time", "0.1",
            "--max-failures", "1", "--junit-xml", str(junit),
        )  # fmt: skip

    assert done.returncode == 1, done.stdout + done.stderr
    finding = re.search(r"^FAILED response_time: POST /token-generation .*\n  (.*)\n  Received: (.*)\n"
                        r"  Documented: (.*)$", done.stdout, re.MULTILINE)  # fmt: skip
    assert finding, done.stdout
    title, received, documented = finding.groups()
    seconds = float(re.fullmatch(r"The partner answered in (\d+\.\d{3}) s, over the 0.1 s allowed", title)[1])
    assert seconds >= LATE, title
    assert received.startswith(f"an answer after {seconds:.3f} s (HTTP 200)"), received
    assert documented == "an answer within 0.1 s (the operator's bound, --max-response-time)"
    summary = done.stdout.rstrip().splitlines()[-1]
    stopped = re.escape("; stopped early after 1 failure (--max-failures 1); ")
    assert re.match(rf"mpesa-atm fuzz bank: FAILED: 1 failure \(response_time\)[^;]*{stopped}", summary), (
        summary
    )
    assert junit_properties(junit)["bounds"] == "max failures 1, max response time 0.1 s"


def _broken(name: str) -> Any:
    return next(broken for broken in BROKEN if broken.name == name)


def test_max_failures_stops_a_campaign_against_a_broken_partner_early(tmp_path, running):
    broken = _broken("plain_text_errors")  # every refusal outside the envelope: failures come early
    results = {}
    for bound in (None, 1):
        app = running.start(broken.app(Settings(db_path=str(tmp_path / f"{bound}.sqlite3"))))
        results[bound] = run_campaign(Target("bank", app=app), max_examples=10, seed=3, max_failures=bound)
    bounded, unbounded = results[1], results[None]

    assert bounded.requests < unbounded.requests, (bounded.requests, unbounded.requests)
    assert bounded.exit_code == 1 and bounded.failures
    assert bounded.stopped == "after 1 failure (--max-failures 1)"
    assert unbounded.stopped is None and unbounded.exit_code == 1
    # The checks the campaign never got to are not exercised, and say why.
    reasons = set(bounded.not_exercised.values())
    assert reasons <= {"not reached: the campaign stopped after 1 failure (--max-failures 1)"}, reasons


def test_without_max_response_time_there_is_no_response_time_check(tmp_path, running):
    broken = _broken("slow_on_longest_account_number")
    app = running.start(broken.app(Settings(db_path=str(tmp_path / "partner.sqlite3"))))

    result = run_campaign(Target("bank", app=app), max_examples=3, seed=7, phases=("fuzz",))

    assert "response_time" not in result.checks and not result.findings
    rows = {row.name: row for row in HtmlReporter(tmp_path / "page.html").context(result)["checks"]}
    assert rows["response_time"].why == "Not run: the campaign has no --max-response-time."


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"max_failures": 0}, "must be at least 1"),
        ({"max_time": 0.0}, "must be a positive number of seconds, not 0"),
        ({"max_response_time": -1.0}, "must be a positive number of seconds, not -1"),
        ({"checks": ["response_time"]}, "is needed by the check response_time"),
    ],
)
def test_a_bound_that_does_not_fit_is_a_usage_error_before_anything_is_sent(options, words):
    target = Target("bank", url="http://127.0.0.1:9")  # nothing listens: refused before any request

    with pytest.raises(UsageError) as raised:
        run_campaign(target, **options)

    assert raised.value.reason == words


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--max-time", "0", "must be a positive number of seconds, not 0"),
        ("--max-response-time", "soon", "not a number of seconds: 'soon'"),
        ("--max-failures", "0", "must be at least 1, not 0"),
    ],
)
def test_a_bound_flag_that_does_not_fit_is_one_line_and_exit_2(flag, value, said):
    done, _ = fuzz("bank", "--url", "http://127.0.0.1:9", flag, value)

    assert done.returncode == 2
    assert f"argument {flag}: {said}" in done.stderr and "Traceback" not in done.stderr


def test_the_stopper_stops_at_the_deadline_or_at_the_nth_failure():
    now = [100.0]
    deadline = Stopper(Bounds(max_time=3), clock=lambda: now[0])
    now[0] += 2.9
    assert not deadline.reached()
    now[0] += 0.1
    assert deadline.reached() and deadline.by_deadline
    assert deadline.reason == "at its deadline (--max-time 3 s)"

    failures = Stopper(Bounds(max_failures=2, max_time=60), clock=lambda: now[0])
    failures.failed(1)
    assert not failures.reached()
    failures.failed(2)
    assert failures.reached() and not failures.by_deadline
    assert failures.reason == "after 2 failures (--max-failures 2)"
    now[0] += 60  # the first bound reached is the one that stopped it
    assert failures.reason == "after 2 failures (--max-failures 2)"


def test_response_time_is_the_operators_bound_a_failure():
    rule = RULES["response_time"]

    assert rule.severity == FAILURE
    assert rule.source == "the operator's bound, --max-response-time"


@pytest.mark.parametrize(
    ("options", "runs"),
    [
        ({"checks": ["not_a_server_error"]}, True),  # the bound asks for its check
        ({"exclude_checks": ["response_time"]}, False),
    ],
)
def test_max_response_time_runs_its_check_whatever_check_names_unless_excluded(
    options, runs, tmp_path, running
):
    app = running.start(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))))

    result = run_campaign(
        Target("bank", app=app), max_examples=1, seed=1, phases=("fuzz",), max_response_time=30, **options
    )

    assert ("response_time" in result.checks) is runs
    if runs:  # an in-process mock answers well within 30 s
        assert result.verdict("response_time").status == "passed"
