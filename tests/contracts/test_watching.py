"""A verification a person watches and stops: each interaction printed as it is verified, Ctrl-C
obeyed within 2 s with what was verified written, the output files checked before anything is sent.
A real `mpesa-atm verify` process against a provider that answers late."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mpesa_atm.contracts import BANK, IPG, pact_dir
from mpesa_atm.contracts.generate import pact_file_name, read_pact
from mpesa_atm.contracts.report import NOT_RUN
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from tests.contracts.fixtures import SlowAnswers
from tests.fixtures.servers import wait_for

pytestmark = pytest.mark.network

DELAY = 1.0  # seconds each answer of the provider's API takes


@dataclass
class Watched:
    """A `mpesa-atm verify` process, its output lines read as they come, with when each came."""

    process: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    errors: str = ""

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def __enter__(self) -> Watched:
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()
        self.reader.join()
        assert self.process.stdout is not None and self.process.stderr is not None
        self.errors = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()

    def interaction_lines(self) -> list[tuple[float, str]]:
        return [(at, line) for at, line in self.lines if line.startswith("  ok ")]


def watch(url: str, role: str, *options: str) -> Watched:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPESA_ATM_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mpesa_atm", "verify", role, "--url", url, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return Watched(process)


@pytest.fixture
def slow_provider(serve_app, tmp_path):
    def serve(role: str) -> str:
        app = create_app(role, Settings(db_path=str(tmp_path / f"{role}.sqlite3")))
        return serve_app(SlowAnswers(app, DELAY))

    return serve


def test_each_interaction_is_printed_as_it_is_verified(slow_provider):
    with watch(slow_provider("bank"), "bank") as watched:
        assert watched.process.wait(timeout=60) == 0
    (first, _), (second, _) = watched.interaction_lines()
    # The second interaction takes at least DELAY: the first was printed before it began.
    assert second - first >= DELAY * 0.8


def test_ctrl_c_stops_verify_within_2_s_with_what_was_verified_written(slow_provider, tmp_path: Path):
    junit = tmp_path / "verify.xml"
    with watch(slow_provider("ipg"), "ipg", "--junit-xml", str(junit)) as watched:
        wait_for(lambda: watched.interaction_lines(), "the first interaction verified", timeout=30)
        watched.process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        code = watched.process.wait(timeout=2)
        took = time.monotonic() - interrupted
    assert code == 130
    assert took < 2
    out = "\n".join(line for _, line in watched.lines)
    total = len(read_pact(pact_dir() / pact_file_name(BANK, IPG))["interactions"])
    verified = len(watched.interaction_lines())
    assert f"{total} interactions: {verified} verified, 0 with warnings, 0 failed, " in out
    assert f"{total - verified} not run (interrupted)" in out
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    skipped = [case for case in cases if case.find("skipped") is not None]
    assert len(cases) == total
    assert len(skipped) == total - verified > 0
    assert {case.find("skipped").get("message") for case in skipped} == {NOT_RUN}
    assert watched.errors == ""


@pytest.mark.parametrize("flag", ["--report", "--har", "--junit-xml"])
def test_an_unwritable_output_file_is_refused_before_anything_is_sent(flag, serve_app, tmp_path, capsys):
    from mpesa_atm.cli import main

    seen: list[str] = []
    app = create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3")))

    async def watching(scope, receive, send):
        if scope["type"] == "http":
            seen.append(scope["path"])
        await app(scope, receive, send)

    missing = tmp_path / "nowhere" / "out.file"
    started = time.monotonic()
    code = main(["verify", "bank", "--url", serve_app(watching), flag, str(missing)])
    took = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"mpesa-atm: error: {flag} {missing}: the folder {missing.parent} does not exist\n"
    assert captured.out == ""
    assert seen == []
    assert took < 1


def test_the_files_written_are_named_before_the_summary(serve_app, tmp_path, capsys):
    from mpesa_atm.cli import main
    from mpesa_atm.reporting.outputs import size_of

    url = serve_app(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))))
    junit, page = tmp_path / "verify.xml", tmp_path / "verify.html"
    assert main(["verify", "bank", "--url", url, "--junit-xml", str(junit), "--report", str(page)]) == 0
    *_, written, summary = capsys.readouterr().out.rstrip().splitlines()
    sizes = {path: size_of(path.stat().st_size) for path in (page, junit)}
    assert written == f"written: {page} ({sizes[page]}), {junit} ({sizes[junit]})"
    assert summary == "2 interactions: 2 verified, 0 with warnings, 0 failed"  # the summary stays last
    assert IPG in junit.read_text()
