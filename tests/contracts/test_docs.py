"""docs/contracts.md, "Verify against the contracts", against the code: its commands parse, its tables
are the pacts', its Python runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from mpesa_atm.cli import build_parser
from mpesa_atm.contracts import BANK, IPG, pact_dir
from mpesa_atm.contracts.generate import pact_file_name, read_pact

ROOT = Path(__file__).resolve().parents[2]
HEADING = "# Verify against the contracts"
# The pages that hold the section; each is checked on its own.
PAGES = ["docs/contracts.md"]
ROLES = {IPG: "iPG", BANK: "bank"}


def section(text: str, heading: str = HEADING) -> str | None:
    """The text under `heading` (a line of its own) up to the next heading of its level or higher,
    code blocks skipped (a `# comment` in a shell block is no heading); None without the heading."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == heading) + 1
    except StopIteration:
        return None
    in_code = False
    for end in range(start, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(rf"#{{1,{level}}} ", line):
            return "".join(lines[start:end])
    return "".join(lines[start:])


@pytest.fixture(params=PAGES)
def doc(request: pytest.FixtureRequest) -> str:
    """The section in the page; a page without it fails every test that reads it."""
    found = section((ROOT / request.param).read_text(encoding="utf-8"))
    if found is None:
        pytest.fail(f"{request.param} has no line {HEADING!r}: where did the section go?", pytrace=False)
    return found


def blocks(doc: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", doc, flags=re.DOTALL)


def yaml_commands(doc: str) -> list[str]:
    commands = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("run", "script"):
                    commands.extend([value] if isinstance(value, str) else value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for block in blocks(doc, "yaml"):
        walk(yaml.safe_load(block))
    return commands


def verify_commands(doc: str) -> list[list[str]]:
    lines = [line for block in blocks(doc, "sh") for line in block.splitlines()] + yaml_commands(doc)
    return [shlex.split(line)[1:] for line in lines if line.startswith("mpesa-atm verify")]


def table(doc: str, heading: str) -> list[list[str]]:
    """The rows of the first table after `heading`, cells stripped of backticks."""
    text = doc.split(heading, 1)[1]
    rows = re.findall(r"^\|(.*)\|$", text.split("\n#", 1)[0], flags=re.MULTILINE)
    cells = [[cell.strip().replace("`", "") for cell in row.split("|")] for row in rows]
    return cells[2:]  # after the header and its rule


def committed() -> list[tuple[str, str, dict]]:
    """(consumer, provider, interaction) of every committed pact."""
    return [
        (consumer, provider, interaction)
        for consumer, provider in ((BANK, IPG), (IPG, BANK))
        for interaction in read_pact(pact_dir() / pact_file_name(consumer, provider))["interactions"]
    ]


def test_the_section_is_in_its_page(doc):
    assert "mpesa-atm verify" in doc


def test_a_missing_heading_is_no_section():
    page = "# Verify against the contract\n\n```sh\nmpesa-atm verify ipg --url http://127.0.0.1:8001\n```\n"
    assert section(page) is None


def test_the_section_ends_at_the_next_heading_of_its_level_not_at_a_shell_comment():
    page = (
        "# Other\nno\n# Verify against the contracts\nyes\n```sh\n# a comment\n```\n## Sub\nyes\n# Next\nno\n"
    )
    assert section(page) == "yes\n```sh\n# a comment\n```\n## Sub\nyes\n"


def test_the_doc_shows_verify_commands_for_both_roles_in_shell_and_ci(doc):
    commands = verify_commands(doc)
    assert {argv[1] for argv in commands} == {"ipg", "bank"}
    assert len(yaml_commands(doc)) >= 4


def test_every_verify_command_of_the_doc_is_one_the_cli_accepts(doc):
    for argv in verify_commands(doc):
        args = build_parser().parse_args(argv)
        assert args.command == "verify", argv


def test_the_interactions_table_is_the_pacts(doc):
    documented = {(row[0], row[1], row[2], row[3]) for row in table(doc, "## The interactions")}
    in_pacts = {
        (
            f"{ROLES[consumer]} → {ROLES[provider]}",
            interaction["description"],
            "; ".join(state["name"] for state in interaction["providerStates"]),
            interaction["response"]["body"]["content"]["output_ResponseCode"],
        )
        for consumer, provider, interaction in committed()
    }
    assert documented == in_pacts


def test_the_provider_states_table_is_the_pacts(doc):
    documented = {(row[0], row[1], row[2]) for row in table(doc, "## Provider states your service sets up")}
    in_pacts = {
        (ROLES[provider], state["name"], ", ".join(state["params"]))
        for _, provider, interaction in committed()
        for state in interaction["providerStates"]
    }
    # The table lists the parameters in a reading order; the pact sorts them.
    normalised = {(role, name, ", ".join(sorted(params.split(", ")))) for role, name, params in documented}
    assert normalised == {
        (role, name, ", ".join(sorted(params.split(", ")))) for role, name, params in in_pacts
    }


def test_the_sample_report_lists_the_ipg_interactions_in_the_order_verify_prints_them(doc):
    (sample,) = blocks(doc, "text")
    listed = re.findall(r"^  (?:ok|WARNING|FAILED) +(.*?)  \(consumer", sample, flags=re.MULTILINE)
    assert listed == [i["description"] for c, _, i in committed() if c == BANK]


@pytest.mark.network
def test_the_python_snippet_verifies_the_served_ipg_mock(doc, serve):
    (snippet,) = blocks(doc, "python")
    served = serve(role="ipg")
    exec(snippet.replace("http://127.0.0.1:8001", served.ipg_url), {})
