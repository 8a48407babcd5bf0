"""Security of the served mocks: hashed bank passwords, compared in constant time and never written to
the journal, the database or the logs; loopback by default; the control token; a bounded journal."""

from __future__ import annotations

import hmac
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from mpesa_atm.passwords import hash_password
from mpesa_atm.settings import BankAccount
from tests.fixtures.mocks import DOCUMENT_GENERATION, DOCUMENT_REDEMPTION
from tests.fixtures.tokens import seed_token

# Distinctive enough that finding it anywhere can only mean it leaked.
PASSWORD = "Tr0ub4dor&3-" + secrets.token_hex(6)
JSON = {"Content-Type": "application/json"}


def hashed_with_the_cli(password: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "hash-password", "--password-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert PASSWORD not in result.stdout
    return result.stdout.strip()


def config(tmp_path: Path, **top: object) -> Path:
    """A config whose iPG knows the bank by a password hash, and whose bank mock calls with it."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in top.items()]
    lines += [
        "[[ipg.banks]]",
        'username = "fnb"',
        f'password_hash = "{hashed_with_the_cli(PASSWORD)}"',
        'shortcodes = ["49272"]',
        "[bank]",
        f'password = "{PASSWORD}"',
    ]
    path = tmp_path / "mpesa-atm.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.network
def test_hashed_password_authenticates_and_no_password_is_written_anywhere(serve, tmp_path):
    served = serve("--config", str(config(tmp_path)))
    ipg, bank = served.ipg_url, served.bank_url
    redemption = {**DOCUMENT_REDEMPTION, "input_Password": PASSWORD}
    seed_token(ipg)

    answer = httpx.post(f"{ipg}/token-redemption", json=redemption).json()
    assert answer["output_ResponseCode"] == "0"
    wrong = {**redemption, "input_Password": PASSWORD + "x", "input_ThirdPartyReference": "wrong-1"}
    assert httpx.post(f"{ipg}/token-redemption", json=wrong).json()["output_ResponseCode"] == "-4"
    document = httpx.post(
        f"{ipg}/token-redemption", json={**DOCUMENT_REDEMPTION, "input_ThirdPartyReference": "d"}
    )
    assert document.json()["output_ResponseCode"] == "-4"  # the document's sample password is not it

    # The bank mock drives the iPG with the configured password: outbound journal entries.
    withdrawal = httpx.post(
        f"{ipg}/_harness/withdrawals", json={"msisdn": "243843330333", "amount": "50", "currency": "USD"}
    )
    assert withdrawal.status_code == 201, withdrawal.text
    driven = httpx.post(
        f"{bank}/_harness/redemptions",
        json={"bank_transaction_ref": withdrawal.json()["bank_transaction_ref"]},
    )
    assert driven.json()["ipg_response"]["output_ResponseCode"] == "0"

    # Hostile shapes that still carry the password: not JSON, nested, cut at the journal's text
    # limit, in the query string, larger than the body limit.
    password = PASSWORD.encode()
    hostile = [
        b'{"input_Password": "' + password + b'", broken',
        b'[{"input_Password": "' + password + b'"}]',
        b'{"x": {"input_Password": "' + password + b'"}}',
        b'{"pad": "' + b"p" * 4070 + b'", "input_Password": "' + password + b'"}',
        b"{'input_Password': '" + password + b"'}",
        b"input_Password=" + quote(PASSWORD).encode(),
        b'{"input_Password": "' + password + b'", "pad": "' + b"p" * 70_000 + b'"}',
    ]
    for content in hostile:
        response = httpx.post(f"{ipg}/token-redemption", content=content, headers=JSON)
        assert 400 <= response.status_code < 500, response.text
    query = httpx.post(f"{ipg}/token-redemption?input_Password={quote(PASSWORD)}", json=redemption)
    assert query.status_code == 400

    journals = {
        role: httpx.get(f"{url}/_harness/journal", params={"limit": 100}).text
        for role, url in served.urls.items()
    }
    assert journals["ipg"].count('"********"') >= 4  # the entries are there, masked
    assert '"direction": "outbound"' in journals["bank"]
    served.stop()  # and everything it wrote is on disk
    leaks = {name: text for name, text in journals.items() if leaked(text.encode())}
    leaks |= {path.name: "" for path in tmp_path.glob("served.sqlite3*") if leaked(path.read_bytes())}
    leaks |= {"log": served.log()} if leaked(served.log().encode()) else {}
    assert not leaks, f"the password was written to {sorted(leaks)}"


def leaked(data: bytes) -> bool:
    forms = {PASSWORD, quote(PASSWORD), quote(PASSWORD, safe=""), json.dumps(PASSWORD)[1:-1]}
    return any(form.encode() in data for form in forms)


def test_passwords_and_control_tokens_are_compared_in_constant_time(make_mocks, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a, b):
        compared.append((bytes(a) if not isinstance(a, str) else a.encode(), bytes(b)))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    banks = (
        BankAccount(username="plain", password="plain-secret", shortcodes=("49272",)),
        BankAccount(username="hashed", password_hash=hash_password("hashed-secret"), shortcodes=("49272",)),
    )
    mocks = make_mocks(banks=banks, control_token="control-secret")
    for username, password in (("plain", "plain-guess"), ("hashed", "hashed-guess")):
        body = {**DOCUMENT_REDEMPTION, "input_Username": username, "input_Password": password}
        assert mocks.ipg.post("/token-redemption", json=body).json()["output_ResponseCode"] == "-4"
    assert mocks.ipg.get("/_harness/journal", headers={"Authorization": "Bearer guess"}).status_code == 401
    pairs = [set(pair) for pair in compared]  # either order
    assert {b"plain-guess", b"plain-secret"} in pairs
    assert any(len(a) == len(b) == 32 for a, b in compared)  # the scrypt digests
    assert {b"guess", b"control-secret"} in pairs  # the bearer token, as connexion takes it out


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _, state = line.split()[1:4]
            address, _, port_hex = local.partition(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.network
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_mocks_listen_on_loopback_only_by_default(serve):
    served = serve()
    for url in served.urls.values():
        assert listening_addresses(httpx.URL(url).port) == {"0100007F"}  # 127.0.0.1, and nothing else


@pytest.mark.network
def test_control_api_requires_the_token_and_the_api_does_not(serve):
    served = serve("--control-token", "control-secret")
    bank = served.bank_url
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "control-secret"}):
        assert httpx.post(f"{bank}/_harness/reset", headers=headers).status_code == 401
        assert httpx.get(f"{bank}/_harness/journal", headers=headers).status_code == 401
    authorised = {"Authorization": "Bearer control-secret"}
    assert httpx.get(f"{bank}/_harness/journal", headers=authorised).status_code == 200
    assert httpx.get(f"{bank}/_harness/health").status_code == 200  # for load balancers
    assert (
        httpx.post(f"{bank}/token-generation", json=DOCUMENT_GENERATION).json()["output_ResponseCode"] == "0"
    )
    assert "control-secret" not in served.log()


@pytest.mark.network
def test_journal_keeps_only_its_configured_size(serve, tmp_path):
    served = serve("--config", str(config(tmp_path, journal_limit=5)), role="bank")
    url = served.urls["bank"]
    ids = [f"BOUND{i}" for i in range(12)]
    for transaction_id in ids:
        body = {**DOCUMENT_GENERATION, "input_TransactionID": transaction_id}
        assert httpx.post(f"{url}/token-generation", json=body).status_code == 200
    entries = httpx.get(f"{url}/_harness/journal", params={"limit": 100}).json()["entries"]
    assert [e["request"]["input_TransactionID"] for e in entries] == ids[::-1][:5]
    on_disk = [Path(f"{served.db_path}.journal-bank{part}.jsonl") for part in ("", ".1")]
    lines = sum(path.read_bytes().count(b"\n") for path in on_disk if path.exists())
    assert 5 <= lines <= 10  # a new file every 5 entries, and the one before it kept


def _command_lines(process_group: int) -> list[str]:
    """The command lines of the processes of a process group, as `ps` shows them to anyone."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) == process_group:
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile
    return found


@pytest.mark.network
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads Linux's process table")
def test_a_control_token_from_a_file_is_required_and_not_in_the_process_list(serve, tmp_path):
    token = "file-secret-" + secrets.token_hex(8)
    token_file = tmp_path / "control-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    served = serve("--control-token-file", str(token_file))

    for url in served.urls.values():
        assert httpx.post(f"{url}/_harness/reset").status_code == 401
        authorised = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{url}/_harness/reset", headers=authorised).status_code == 200
    command_lines = _command_lines(served.process.pid)
    assert len(command_lines) >= 3, command_lines  # serve and its two role processes at least
    assert not [line for line in command_lines if token in line]
    assert "warning" not in served.log()


def test_a_control_token_on_the_command_line_is_warned_about():
    shown = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "serve", "--control-token", "shown-secret", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 2
    warning = shown.stderr.splitlines()[0]
    assert warning.startswith("mpesa-atm: warning: --control-token shows in the process list")
    assert "--control-token-file" in warning and "shown-secret" not in shown.stderr


@pytest.mark.parametrize("content", [None, "\n"], ids=["missing", "empty"])
def test_a_control_token_file_that_gives_no_token_is_one_line(tmp_path, content):
    token_file = tmp_path / "control-token"
    if content is not None:
        token_file.write_text(content, encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "mpesa_atm", "serve", "--control-token-file", str(token_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("mpesa-atm: error: control_token_file: ")
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
