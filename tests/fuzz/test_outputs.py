"""fuzz's output files (--report, --har, --junit-xml): checked writable before anything is sent, and
named with their sizes once written (mpesa_atm.reporting.outputs)."""

from __future__ import annotations

import os
import time

import pytest
from starlette.types import Receive, Scope, Send

from mpesa_atm.cli import main
from mpesa_atm.errors import UsageError
from mpesa_atm.mocks import create_app
from mpesa_atm.reporting.outputs import OutputFiles, before_last_line, size_of
from mpesa_atm.settings import Settings

pytestmark = pytest.mark.usefixtures("fuzz_command_in_process")


class CountingPartner:
    """A partner that counts what it is sent and answers nothing useful."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("flag", ["--report", "--har", "--junit-xml"])
def test_an_output_file_in_a_missing_folder_is_refused_before_anything_is_sent(
    flag, serve_app, tmp_path, capsys
):
    partner = CountingPartner()
    url = serve_app(partner)
    missing = tmp_path / "nowhere" / "out.file"
    started = time.monotonic()
    code = main(["fuzz", "bank", "--url", url, "--max-examples", "5", flag, str(missing)])
    took = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == (
        f"mpesa-atm: error: {flag} {missing}: the folder {missing.parent} does not exist\n"
    )
    assert captured.out == ""
    assert partner.requests == 0
    assert took < 1


@pytest.mark.network
def test_the_files_written_are_named_with_their_sizes_before_the_summary(serve_app, tmp_path, capsys):
    url = serve_app(create_app("bank", Settings(db_path=str(tmp_path / "bank.sqlite3"))))
    junit, har = tmp_path / "fuzz.xml", tmp_path / "fuzz.har"
    files = ["--junit-xml", str(junit), "--har", str(har)]
    code = main(["fuzz", "bank", "--url", url, "--max-examples", "5", "--seed", "1", *files])
    assert code == 0
    *_, written, summary = capsys.readouterr().out.rstrip().splitlines()
    assert summary.startswith("mpesa-atm fuzz bank: PASSED")  # the summary stays last
    assert written == (
        f"written: {har} ({size_of(os.path.getsize(har))}), {junit} ({size_of(os.path.getsize(junit))})"
    )


def refusal(tmp_path, *given: tuple[str, str]) -> str:
    with pytest.raises(UsageError) as refused:
        OutputFiles.check(given)
    return str(refused.value)


def test_a_folder_given_as_the_file_is_refused(tmp_path):
    assert (
        refusal(tmp_path, ("--report", str(tmp_path)))
        == f"--report {tmp_path}: is a folder: give a file's name"
    )


def test_a_file_given_as_the_folder_is_refused(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert (
        refusal(tmp_path, ("--har", str(plain / "x.har")))
        == f"--har {plain / 'x.har'}: {plain} is not a folder"
    )


def test_a_folder_where_no_file_can_be_created_is_refused():
    # /sys refuses new files even to root, whom permissions would not stop.
    assert (
        refusal(None, ("--junit-xml", "/sys/x.xml"))
        == "--junit-xml /sys/x.xml: cannot be created: Permission denied"
    )


def test_two_flags_naming_one_file_are_refused(tmp_path):
    same = str(tmp_path / "out")
    assert (
        refusal(tmp_path, ("--report", same), ("--har", same))
        == f"--har {same}: --report writes that file too"
    )


def test_checking_leaves_no_file_behind_and_an_existing_one_untouched(tmp_path):
    new, old = tmp_path / "new.html", tmp_path / "old.html"
    old.write_text("kept")
    outputs = OutputFiles.check([("--report", str(new)), ("--har", str(old)), ("--junit-xml", None)])
    assert not new.exists()
    assert old.read_text() == "kept"
    assert outputs.written() is None  # nothing written yet: the old file is not the run's


def test_sizes_are_worded_in_decimal_units():
    assert [size_of(n) for n in (512, 9_400, 84_000, 1_200_000)] == ["512 B", "9.4 KB", "84 KB", "1.2 MB"]


def test_the_written_line_goes_before_the_last_line_of_a_block():
    assert before_last_line("a\nsummary\n", "written: x (1 B)") == "a\nwritten: x (1 B)\nsummary\n"
    assert before_last_line("summary\n", "written: x (1 B)") == "written: x (1 B)\nsummary\n"
    assert before_last_line("a\nsummary\n", None) == "a\nsummary\n"
