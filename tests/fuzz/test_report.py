"""Findings are actionable: reproducers that run as printed, without the password; the docs' table is
the catalogue; the docs' snippet works."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from mpesa_atm.fuzz import CHECKS, curl_command

PAGE = Path(__file__).resolve().parents[2] / "docs" / "fuzzing.md"
DOCS = PAGE.read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", DOCS, flags=re.DOTALL)
# A stand-in for curl: prints its arguments one per line, then its standard input.
_FAKE_CURL = 'curl() { printf "%s\\n" "$@"; if [ "${@: -1}" = "@-" ]; then cat; fi; }; '


def _run_in_bash(command: str, env: dict[str, str] | None = None) -> bytes:
    done = subprocess.run(
        ["bash", "-c", _FAKE_CURL + command], capture_output=True, check=True, env=env or {}
    )
    return done.stdout


def test_curl_reproducer_reads_the_password_from_the_environment():
    body = {"input_Username": "fnb", "input_Password": "P@ss 'w\"rd", "input_Amount": "200"}

    command = curl_command("http://127.0.0.1:8001/token-redemption", body, secret="P@ss 'w\"rd")

    assert "P@ss" not in command
    printed = _run_in_bash(command, {"MPESA_ATM_PASSWORD": "the-real-one"}).decode().splitlines()
    assert printed[:6] == [
        "-sS",
        "-X",
        "POST",
        "http://127.0.0.1:8001/token-redemption",
        "-H",
        "Content-Type: application/json",
    ]
    assert printed[6] == "--data-raw"
    assert json.loads(printed[7]) == {**body, "input_Password": "the-real-one"}


def test_curl_reproducer_of_a_non_json_body_sends_its_exact_bytes():
    raw = b"\x00\xff{'%\\\n\x8e"

    command = curl_command("http://bank.test/token-generation", raw)

    printed = _run_in_bash(command)
    assert printed.endswith(b"--data-binary\n@-\n" + raw)


def test_curl_reproducer_of_a_text_body_sends_it_as_is():
    command = curl_command("http://bank.test/token-generation", '{"a": "it\'s"}', media_type="text/plain")

    printed = _run_in_bash(command).decode().splitlines()
    assert printed[5:] == ["Content-Type: text/plain", "--data-raw", '{"a": "it\'s"}']


def test_curl_reproducer_reads_a_nested_password_from_the_environment_too():
    body = {"items": [{"input_Password": "P@ssword123"}], "input_Password": "P@ssword123"}

    command = curl_command("http://ipg.test/token-redemption", body, secret="P@ssword123")

    assert "P@ssword123" not in command
    printed = json.loads(_run_in_bash(command, {"MPESA_ATM_PASSWORD": "env"}).decode().splitlines()[7])
    assert printed == {"items": [{"input_Password": "env"}], "input_Password": "env"}


def test_curl_reproducer_leaves_other_passwords_visible():
    body = {"input_Password": "wrong-password"}

    command = curl_command("http://ipg.test/token-redemption", body, secret="P@ssword123")

    assert json.loads(_run_in_bash(command).decode().splitlines()[7]) == body


def _table_names(text: str) -> list[str]:
    return re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE)


def test_docs_table_lists_every_check_the_campaign_runs():
    assert "\n## The checks\n" in DOCS, f"{PAGE} has no section '## The checks'"
    names = _table_names(DOCS.split("\n## The checks\n", 1)[1])

    assert sorted(names) == sorted(info.name for info in CHECKS)


def test_docs_have_a_python_snippet():
    assert SNIPPETS, f"{PAGE} has no python snippet"


@pytest.mark.parametrize("snippet", SNIPPETS)
def test_docs_python_snippet_runs(snippet, capsys):
    exec(compile(snippet, str(PAGE), "exec"), {})

    # 6 edge cases, 164 boundary values (154 of them currencies), 20 examples
    assert "190 cases" in capsys.readouterr().out
