"""The catalogue of checks: each names the document section it enforces, within what its roles implement."""

from __future__ import annotations

import re

import pytest

from mpesa_atm.fuzz.checks import BOUND_CHECKS, CHECKS
from mpesa_atm.judgement import RULES
from mpesa_atm.operations import operations

RESPONSE_CODE_MAPPING = "4"


@pytest.mark.parametrize("info", CHECKS, ids=[info.name for info in CHECKS])
def test_every_check_names_the_document_sections_it_enforces(info):
    if info.name in BOUND_CHECKS:  # an operator's bound, which the document does not give
        assert info.section == "" and RULES[info.name].bound, info.name
        return
    own = tuple(op.section for op in operations().values() if op.role in info.roles)
    sections = info.section.split(", ")

    assert all(re.fullmatch(r"[1-9](\.[1-9])*", section) for section in sections), info.section
    for section in sections:
        within = any(section == op or section.startswith(f"{op}.") for op in own)
        assert section == RESPONSE_CODE_MAPPING or within, (section, info.roles)


def test_sections_of_a_rule_are_those_of_each_operation_it_applies_to():
    section = {info.name: info.section for info in CHECKS}

    assert section["bank_reference_length"] == "3.1.3.1"
    assert section["third_party_reference_echoed"] == "2.1.3.1, 2.2.3.1"
    assert section["replay_is_duplicate"] == "2.1, 2.2, 3.1"
    assert section["wrong_password_rejected"] == RESPONSE_CODE_MAPPING
