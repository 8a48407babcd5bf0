"""The shell blocks of README.md and docs/*.md run as written, in page order, against real servers.

Each page is one session in a folder of its own (where `mpesa-atm serve` keeps its store), typed as
a reader types it, with this environment's `mpesa-atm` first on PATH and no MPESA_ATM_* variable:

- A block runs command by command through bash; `# ...` lines are comments. `# {...}` lines right
  after a command are the answer it documents; a comment line that says "exit N" gives the exit code
  of the commands under it (0 if none does).
- `mpesa-atm serve` never ends. Typed alone, it is started in the background and its banners are
  awaited, as a reader waits for them before typing on in another terminal; typed with `&`, nothing
  waits for it (fuzz and verify do, with `--wait`). A block that starts a serve first stops those of
  earlier blocks (the reader's Ctrl-C); the page's end stops them all.
- `<name>` in a command is what the reader fills in: the `name` field of an earlier answer on the page.
- curl reads a config file of the test's (CURL_HOME) that adds `--write-out` of the HTTP status, so
  the status is checked while the command stays as written.
- A comment right before a block says how else it runs, and the test reads it:
  `<!-- docs-test: not run: REASON -->` (its `mpesa-atm` lines are still parsed by the CLI's
  parser), `<!-- docs-test: runs "PART"; REASON -->` (only PART, a piece of the block as written),
  `<!-- docs-test: with "COMMAND" running -->` (a `mpesa-atm serve` of another page, started first).

Ports: the docs use the defaults, 8001 and 8002. When both are free, the pages run exactly as
written. When either is taken (a developer's own `mpesa-atm serve`, another run of the suite), each
8001 and 8002 in the page's commands and documented output becomes a port free at that moment, and a
`mpesa-atm serve` that names no port gets the flags for them: the only way the sequence stays as
typed, `serve &` then `fuzz --url` at once, needs the port before the server starts (port 0 and the
banner would not be the docs' sequence). A page whose serve then finds its port taken (another
process took it since) is run again, on ports picked again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mpesa_atm.cli import DEFAULT_PORTS
from tests.doc_blocks import (
    PAGES,
    ROOT,
    Command,
    Outcome,
    PageRun,
    PortTaken,
    blocks,
    page_ports,
    parsed,
    stray_markers,
    words,
)

# The README says to send the redemption twice (the second answer: -3 with the first reference).
SENT_TWICE = {"README.md": "/token-redemption"}
RUNNABLE = [command for page in PAGES for block in blocks(page) for command in block.to_run()]
RUN_PAGES = sorted({command.page for command in RUNNABLE}, key=PAGES.index)


@pytest.fixture(scope="module")
def run_page(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], PageRun]:
    """Runs a page once for the module; its servers are stopped before it is returned."""
    if shutil.which("mpesa-atm", path=str(Path(sys.executable).parent)) is None:
        pytest.fail(f"no mpesa-atm script beside {sys.executable}: install the checkout (pip install -e .)")
    runs: dict[str, PageRun] = {}

    def run(page: str) -> PageRun:
        if page not in runs:
            for ports in page_ports():
                folder = tmp_path_factory.mktemp(re.sub(r"\W", "-", page))
                runs[page] = PageRun(page, folder, ports, SENT_TWICE.get(page))
                try:
                    runs[page].run(blocks(page))
                except PortTaken as exc:
                    runs[page].error = f"its port was taken, three times: {exc}"
                    continue
                except (AssertionError, RuntimeError) as exc:
                    runs[page].error = str(exc)
                break
        if runs[page].error:
            pytest.fail(f"{page} could not be run to its end: {runs[page].error}")
        return runs[page]

    return run


def needs_curl(page: str) -> None:
    if shutil.which("curl") is None and any(c.argv[0] == "curl" for c in RUNNABLE if c.page == page):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but curl is not installed: the docs' curl lines cannot run")
        pytest.skip(f"curl is not installed: {page}'s curl lines cannot run")


def documented_fields(answer: str) -> dict[str, str]:
    """`"key": value` of a documented answer (`# {...}`), values as written ("<32 characters>")."""
    return dict(re.findall(r'"(\w+)": ("[^"]*"|\{[^}]*\})', answer))


def check_answer(command: Command, outcome: Outcome) -> None:
    assert outcome.status is not None and 200 <= outcome.status < 300, (outcome.status, outcome.output)
    body = json.loads(outcome.output)
    assert "P@ssword123" not in outcome.output  # masked wherever a mock shows a call
    documented = documented_fields(command.answer)
    for key, value in documented.items():
        assert key in body, (key, body)
        length = re.fullmatch(r'"<(\d+) characters>"', value)
        if length:
            assert len(body[key]) == int(length.group(1)), (key, body[key])
        elif value == '"<YYYYMMDD HHMMSS>"':
            assert re.fullmatch(r"\d{8} \d{6}", body[key]), (key, body[key])
        elif not value.startswith(('"<', "{")):
            assert json.dumps(body[key]) == value, (key, body[key])
    if "output_ResponseCode" in body and "output_ResponseCode" not in documented:
        assert body["output_ResponseCode"] == "0", body  # the docs' calls are the ones that succeed


def check_output(command: Command, outcome: Outcome) -> None:
    """The key phrases of what each kind of command documents."""
    argv = words(outcome.command)
    if command.serves:
        args = parsed(argv[1:])
        roles = (
            {args.role: args.port or DEFAULT_PORTS[args.role]}
            if args.role
            else {"ipg": args.ipg_port, "bank": args.bank_port}
        )
        for role, port in roles.items():
            name = {"ipg": "iPG", "bank": "bank"}[role]
            assert f"{name} mock on http://127.0.0.1:{port} " in outcome.output, outcome.output
        for partner, url in (("bank", args.bank_url), ("iPG", args.ipg_url)):
            if url:
                assert f"calls the {partner} at {url}" in outcome.output, outcome.output
        return
    assert outcome.code == command.exit_code, outcome.output
    if argv[0] == "curl":
        check_answer(command, outcome)
    elif argv[:2] == ["mpesa-atm", "fuzz"]:
        # The last line sums up: cases, requests, time, `no check failed`, the seed (docs/fuzzing.md).
        summary = rf"^mpesa-atm fuzz {argv[2]}: .*\bno check failed\b.*; seed \d+$"
        assert re.search(summary, outcome.output, flags=re.MULTILINE), outcome.output
    elif argv[:2] == ["mpesa-atm", "verify"]:
        url = argv[argv.index("--url") + 1]
        assert outcome.output.startswith(f"Verifying generic-atm-{argv[2]} at {url}\n"), outcome.output
        summary = r"^(\d+) interactions: \1 verified, 0 with warnings, 0 failed$"
        assert re.search(summary, outcome.output, re.M), outcome.output
    else:
        pytest.fail(f"{command}: the test knows no documented output of {argv[0]!r}: teach check_output")


@pytest.mark.network
@pytest.mark.parametrize("command", RUNNABLE, ids=str)
def test_the_command_runs_as_written_and_does_what_the_page_says(run_page, command):
    needs_curl(command.page)
    run = run_page(command.page)
    check_output(command, run.outcomes[command.line])


@pytest.mark.network
def test_the_readme_redemption_sent_twice_answers_minus_3_with_the_first_reference(run_page):
    needs_curl("README.md")
    run = run_page("README.md")
    (first,) = [o for o in run.outcomes.values() if SENT_TWICE["README.md"] in o.command]
    assert first.again is not None and first.again.status == 200, first.again
    once, twice = json.loads(first.output), json.loads(first.again.output)
    assert (once["output_ResponseCode"], twice["output_ResponseCode"]) == ("0", "-3")
    assert twice["output_InsightReference"] == once["output_InsightReference"]


@pytest.mark.network
def test_verify_against_the_mocks_prints_the_sample_output_but_its_failure(run_page):
    """docs/contracts.md's sample is `verify ipg` against the mocks with one interaction failed."""
    run = run_page("docs/contracts.md")
    (verified,) = [o for o in run.outcomes.values() if "verify ipg" in o.command]
    page = (ROOT / "docs/contracts.md").read_text(encoding="utf-8")
    (sample,) = re.findall(r"```text\n(Verifying .*?)```", page, flags=re.DOTALL)
    printed = verified.output.splitlines()
    for line in run.rewrite(sample).splitlines():
        if line.startswith("  pacts: "):  # where the package is installed: the file's name only
            name = line.rsplit("/", 1)[1]
            assert any(p.startswith("  pacts: ") and p.endswith(f"/{name}") for p in printed), verified.output
        elif line.startswith(("Verifying", "  provider states:", "  ok ")):
            assert line in printed, (line, verified.output)


def test_the_pages_whose_commands_run():
    assert RUN_PAGES == ["README.md", "docs/contracts.md", "docs/fuzzing.md", "docs/mocks.md"]
    kinds = {(c.page, " ".join(c.argv[:2]) if c.argv[0] == "mpesa-atm" else c.argv[0]) for c in RUNNABLE}
    assert kinds == {
        ("README.md", "mpesa-atm serve"),
        ("README.md", "curl"),
        ("docs/contracts.md", "mpesa-atm serve"),
        ("docs/contracts.md", "mpesa-atm verify"),
        ("docs/fuzzing.md", "mpesa-atm serve"),
        ("docs/fuzzing.md", "mpesa-atm fuzz"),
        ("docs/mocks.md", "curl"),
    }


def test_the_readme_walks_through_a_withdrawal_with_curl():
    paths = [
        re.sub(r"http://[^/]+", "", c.argv[2])
        for c in RUNNABLE
        if c.page == "README.md" and c.argv[0] == "curl"
    ]
    assert paths == ["/token-generation", "/_harness/withdrawals", "/token-redemption", "/_harness/journal"]


@pytest.mark.parametrize("page", PAGES)
def test_every_marker_stands_before_a_shell_block_and_is_read(page):
    assert stray_markers(page) == []
    for block in blocks(page):
        block.to_run()  # a marker it cannot read fails here


@pytest.mark.parametrize("page", PAGES)
def test_the_mpesa_atm_lines_not_run_are_ones_the_cli_accepts(page):
    for block in blocks(page):
        if block.marker and block.marker.startswith("not run: "):
            for command in block.commands():
                if command.argv[0] == "mpesa-atm":
                    assert parsed(command.argv[1:]).command, command


def test_the_quick_starts_pip_install_is_what_tox_does_before_the_suite():
    """The README's `pip install .` is not run here: tox installs the checkout (not editable, not
    skipped) before it runs the suite, and CI runs the README's `pip install tox && tox`. A wheel
    built from the checkout and installed is what `pip install .` does."""
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    testenv = tox.split("[testenv]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^(skip_install|usedevelop)\s*=", testenv, flags=re.MULTILINE)
    assert re.findall(r"^package\s*=\s*(\S*)", testenv, flags=re.MULTILINE) in ([], ["wheel"])
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install --quiet tox" in ci and re.search(r"^\S*/tox$", ci, flags=re.MULTILINE)


@pytest.mark.network
def test_the_readme_journal_holds_the_redemptions_with_the_password_masked(run_page):
    needs_curl("README.md")
    (journal,) = [o for o in run_page("README.md").outcomes.values() if "/_harness/journal" in o.command]
    entries = json.loads(journal.output)["entries"]
    redemptions = [e for e in entries if e["operation"] == "token_redemption" and e["direction"] == "inbound"]
    assert len(redemptions) == 2, entries
    assert "P@ssword123" not in journal.output
