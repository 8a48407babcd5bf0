"""Every curl snippet of the README, sent to the mocks in process: the docs show what the mocks do."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def curl_snippets() -> list[list[str]]:
    """The README's curl commands, split as a shell would split them."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        joined = "\n".join(lines).replace("\\\n", " ")
        for command in re.findall(r"^curl .*?(?=^\S|\Z)", joined + "\n", flags=re.MULTILINE | re.DOTALL):
            commands.append(shlex.split(command))
    return commands


def send(mocks, argv: list[str], substitutions: dict[str, str]):
    url = next(arg for arg in argv if arg.startswith("http://"))
    port, path = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)", url).groups()
    client = {"8001": mocks.ipg, "8002": mocks.bank}[port]
    if "-d" not in argv:
        return client.get(path)
    data = argv[argv.index("-d") + 1]
    for placeholder, value in substitutions.items():
        data = data.replace(placeholder, value)
    return client.post(path, content=data, headers={"Content-Type": "application/json"})


def test_readme_has_the_snippets_this_test_expects():
    paths = [next(a for a in argv if a.startswith("http")) for argv in curl_snippets()]
    assert len(paths) >= 4, paths


def test_every_readme_curl_snippet_gets_the_answer_the_readme_describes(mocks):
    substitutions: dict[str, str] = {}
    for argv in curl_snippets():
        response = send(mocks, argv, substitutions)
        assert response.status_code in (200, 201), (argv, response.text)
        body = response.json()
        if "bank_transaction_ref" in body:
            substitutions["<bank_transaction_ref>"] = body["bank_transaction_ref"]
        if "output_ResponseCode" in body:
            assert body["output_ResponseCode"] == "0", (argv, body)
        assert "P@ssword123" not in json.dumps(body)
    assert "<bank_transaction_ref>" in substitutions
