"""`mpesa-atm`: usage errors are one line and exit 2; `serve` runs the document's flow end to end."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mpesa_atm.cli import main
from mpesa_atm.passwords import verify_password
from tests.fixtures.servers import port_is_free, wait_for


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpesa_atm", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_busy_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "bank", "--port", str(port), "--db", str(tmp_path / "x.sqlite3"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"cannot listen on http://127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--config", "/no/such/file.toml"], "cannot read config file"),
        (["serve", "--host", "0.0.0.0"], "--control-token"),
        (["serve", "--db", ":memory:", "--workers", "2"], ":memory: cannot be shared"),
        (["serve", "--port", "9000"], "--port needs a role"),
        (["serve", "--db", "/no/such/dir/x.sqlite3"], "cannot open the database"),
        (["serve", "--ipg-port", "99999"], "--ipg-port 99999: a port is a number from 0 to 65535"),
        (["serve", "bank", "--port", "-1"], "--port -1: a port is"),
        (["serve", "--ipg-port", "8123", "--bank-port", "8123"], "are both 8123"),
        (["serve", "--bank-url", "notaurl"], "bank_url: 'notaurl' is not an http:// or https:// URL"),
        (["serve", "--ipg-url", "http://x:port"], "ipg_url: 'http://x:port' has an invalid port"),
        (["serve", "--yes"], "--yes confirms --fresh: give both, or neither"),
    ],
)
def test_usage_and_config_errors_exit_2_with_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpesa-atm: error:")
    assert message in err
    assert err.count("\n") == 1


def test_a_postgresql_database_that_cannot_be_reached_is_one_line_without_its_password(capsys, refused_url):
    port = refused_url.rsplit(":", 1)[1]
    assert main(["serve", "--db", f"postgresql://harness:s3cret@127.0.0.1:{port}/sandbox"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"mpesa-atm: error: cannot use the database postgresql://harness:***@127.0.0.1:{port}/"
    )
    assert "s3cret" not in err and err.count("\n") == 1


def test_a_postgresql_database_without_the_postgres_extra_is_one_line_saying_how_to_get_it():
    # psycopg hidden, as on a machine where the extra was not installed.
    code = (
        "import sys; sys.modules['psycopg'] = None; from mpesa_atm.cli import main;"
        " sys.exit(main(['serve', '--db', 'postgresql://harness:s3cret@db.example/sandbox']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr == (
        "mpesa-atm: error: --db postgresql://harness:***@db.example/sandbox needs PostgreSQL's driver"
        " (psycopg is not installed): pip install 'mpesa-atm-harness[postgres]'\n"
    )


def test_hash_password_prints_a_hash_the_config_accepts():
    result = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "hash-password", "--password-stdin"],
        input="P@ssword123\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert verify_password(result.stdout.strip(), "P@ssword123")


def test_a_library_error_names_its_argument_and_the_cli_its_flag(capsys):
    from mpesa_atm.contracts import verify_provider
    from mpesa_atm.errors import HarnessError, UsageError

    with pytest.raises(UsageError) as raised:
        verify_provider("ipg", "http://127.0.0.1:1", timeout=0)
    assert str(raised.value) == "timeout must be more than 0 seconds"
    assert raised.value.as_flag() == "--timeout must be more than 0 seconds"
    assert isinstance(raised.value, HarnessError)
    assert main(["verify", "ipg", "--url", "http://127.0.0.1:1", "--path", "token_reversal=x"]) == 2
    assert capsys.readouterr().err == "mpesa-atm: error: --path token_reversal=x: a path starts with /\n"


def test_every_error_the_harness_raises_on_purpose_is_under_one_root():
    import mpesa_atm.errors as errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.HarnessError), name
    assert issubclass(errors.StoreBusy, errors.StoreError)
    assert issubclass(errors.UnknownProviderState, LookupError)  # the control API's 404 still


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[paths]\ntoken-generation = "atm/tokens"\n', "paths.token-generation: 'atm/tokens' is not a path"),
        ('[paths]\ntoken-redemption = "/x"\ntoken-reversal = "/x"\n', "two operations at the same path"),
        ('[ipg]\nbank_url = "notaurl"\n', "bank_url: 'notaurl' is not an http"),
        (
            '[[ipg.banks]]\nusername = "b"\npassword = "p"\nshortcodes = ["1"]\nurl = "ftp://x"\n',
            "bank 'b': url: 'ftp://x' is not an http",
        ),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, config, message):
    path = tmp_path / "c.toml"
    path.write_text(config)
    result = run_cli("serve", "--config", str(path), "--db", str(tmp_path / "x.sqlite3"), "--ipg-port", "0")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_hash_password_without_a_terminal_says_how_to_give_it():
    result = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "hash-password"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "mpesa-atm: error: no terminal to ask the password on: pipe it in with --password-stdin\n"
    )


def _ports_are_free(served) -> list[bool]:
    return [port_is_free(int(url.rsplit(":", 1)[1])) for url in served.urls.values()]


@pytest.mark.network
@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_mocks_end_with_their_parent_even_after_kill_9(serve, workers):
    served = serve("--workers", workers)
    assert _ports_are_free(served) == [False, False]
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(5)
    # A role process (sent SIGTERM by the kernel when its parent dies) lets go of its port once its
    # workers have shut down, which uvicorn bounds by timeout_graceful_shutdown (5 s) after its 0.5 s
    # poll: over 2 s twice with --workers 2 at a load of 6 and more (a helper's run; CI's py313 here).
    wait_for(lambda: all(_ports_are_free(served)), "both ports free after the parent's SIGKILL", timeout=8)


@pytest.mark.network
def test_every_link_of_the_banner_answers(serve):
    served = serve()
    links = re.findall(r"(?:docs|spec|control) (http://\S+)", served.log())
    assert len(links) == 6, served.log()
    for link in links:
        assert httpx.get(link, follow_redirects=True).status_code == 200, link


def test_the_store_files_are_ignored_by_git():
    from mpesa_atm.mocks.store import Store

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    db = root / "ignored-probe.sqlite3"
    Store(str(db)).close()
    # What the store made, and every file ARCHITECTURE.md says it writes beside the database.
    names = {p.name for p in root.glob(db.name + "*")}
    names |= {db.name + suffix for suffix in ("-wal", "-shm", ".lock", ".journal.lock")}
    names |= {f"{db.name}.journal-{role}{n}.jsonl" for role in ("ipg", "bank") for n in ("", ".1")}
    try:
        checked = subprocess.run(
            ["git", "check-ignore", "--no-index", *sorted(names)], cwd=root, capture_output=True, text=True
        )
        assert sorted(checked.stdout.split()) == sorted(names)
    finally:
        for path in root.glob(db.name + "*"):
            path.unlink()
