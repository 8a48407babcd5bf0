"""`mpesa-atm fuzz --list-checks` names every check, the rules it holds a partner to and where each comes
from, so that --check and --exclude-check can be given without reading the source."""

from __future__ import annotations

import inspect
import re

import pytest

from mpesa_atm.cli import main
from mpesa_atm.fuzz.checks import CHECKS
from mpesa_atm.judgement import RULES


def _listed(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["fuzz", *argv])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_list_checks_prints_every_check_with_the_source_of_each_rule_and_exits_0(capsys):
    out = _listed(capsys, "--list-checks")  # no role nor --url needed, as for --help

    blocks = out.strip().split("\n\n")
    assert [block.split(" ", 1)[0] for block in blocks] == [info.name for info in CHECKS]
    for info, block in zip(CHECKS, blocks, strict=True):
        head, *rest = block.splitlines()
        assert head.endswith(f"): {info.findings}") and ", ".join(info.roles) in head
        rules = [line for line in rest if line.startswith("  - ")]
        assert len(rules) == len(info.rules) > 0, block
        for name, line in zip(info.rules, rules, strict=True):
            rule = RULES[name]
            assert line == f"  - {rule.says}: a {rule.severity} ({rule.source})"
    assert "docs/spec-notes.md row 21" in out and "(the document, section 4)" in out


def test_list_checks_after_a_role_lists_the_same(capsys):
    assert _listed(capsys, "bank", "--list-checks") == _listed(capsys, "--list-checks")


def test_the_check_option_points_to_the_list(capsys):
    with pytest.raises(SystemExit):
        main(["fuzz", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--check NAME run only this check; repeatable (--list-checks lists them)" in help_text


@pytest.mark.parametrize("info", CHECKS, ids=lambda info: info.name)
def test_a_check_lists_every_rule_it_names_itself(info):
    named = set(re.findall(r'rule="(\w+)"', inspect.getsource(info.function)))
    assert named <= set(info.rules)
    assert set(info.rules) <= set(RULES)
