"""Every curl snippet of the README and of docs/, sent to the mocks in process: the docs show what the
mocks do."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def curl_snippets(page: Path) -> list[list[str]]:
    """The page's curl commands in ```sh blocks, split as a shell would split them."""
    text = page.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        joined = "\n".join(lines).replace("\\\n", " ")
        for command in re.findall(r"^curl .*?(?=^\S|\Z)", joined + "\n", flags=re.MULTILINE | re.DOTALL):
            commands.append(shlex.split(command))
    return commands


WITH_CURL = [page for page in PAGES if curl_snippets(page)]


def send(mocks, argv: list[str], substitutions: dict[str, str]):
    url = next(arg for arg in argv if arg.startswith("http://"))
    port, path = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)", url).groups()
    client = {"8001": mocks.ipg, "8002": mocks.bank}[port]
    if "-d" not in argv:
        return client.get(path)
    data = argv[argv.index("-d") + 1]
    for placeholder, value in substitutions.items():
        data = data.replace(placeholder, value)
    # A placeholder no earlier snippet of the page filled would be sent as is, and refused.
    assert not re.search(r"<[a-z_]+>", data), (argv, substitutions)
    return client.post(path, content=data, headers={"Content-Type": "application/json"})


def test_the_readme_walks_through_a_withdrawal_with_curl():
    paths = [
        re.sub(r"http://[^/]+", "", next(a for a in argv if a.startswith("http")))
        for argv in curl_snippets(README)
    ]
    assert paths == ["/token-generation", "/_harness/withdrawals", "/token-redemption"]


def test_the_pages_with_curl_snippets_are_the_readme_and_the_mocks_page():
    assert [page.relative_to(ROOT).as_posix() for page in WITH_CURL] == ["README.md", "docs/mocks.md"]


@pytest.mark.parametrize("page", WITH_CURL, ids=[page.relative_to(ROOT).as_posix() for page in WITH_CURL])
def test_every_curl_snippet_of_the_page_gets_the_answer_the_page_describes(mocks, page):
    substitutions: dict[str, str] = {}
    for argv in curl_snippets(page):
        response = send(mocks, argv, substitutions)
        assert response.status_code in (200, 201), (argv, response.text)
        body = response.json()
        if "bank_transaction_ref" in body:
            substitutions["<bank_transaction_ref>"] = body["bank_transaction_ref"]
        if "output_ResponseCode" in body:
            assert body["output_ResponseCode"] == "0", (argv, body)
        assert "P@ssword123" not in json.dumps(body)
