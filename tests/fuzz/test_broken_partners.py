"""Every check catches the partner with its fault, and names it: a partner that breaks the document
fails the campaign; one that breaks only a choice of ours gets warnings (exit 0) unless it is strict."""

from __future__ import annotations

import re

import pytest

from mpesa_atm.fuzz import CHECKS, Target, render_finding, run_campaign
from mpesa_atm.settings import Settings
from tests.fuzz.partners import BROKEN, Broken

# How the Documented: line of a finding ends: the document's section where it speaks, the harness's
# reading with its row of docs/spec-notes.md where it is silent, the operator's bound (its flag).
SOURCE = re.compile(
    r"\((the document, [^()]+|the harness's reading, docs/spec-notes\.md row \d+"
    r"|the operator's bound, --[a-z-]+)\)$"
)
# The checks whose findings say so (the token lifecycle's are the lifecycle's own).
SOURCED = {info.name for info in CHECKS}


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
def test_fuzzer_fails_the_broken_partner_and_names_its_check(broken: Broken, tmp_path, credentials, running):
    app = running.start(broken.app(Settings(db_path=str(tmp_path / "partner.sqlite3"))))
    target = Target(broken.role, app=app, credentials=credentials if broken.role == "ipg" else None)

    strict = broken.severity == "warning"
    result = run_campaign(target, max_examples=25, seed=7, strict=strict, **broken.campaign)

    found = {finding.check for finding in result.findings}
    shown = "\n\n".join(render_finding(finding) for finding in result.findings)
    assert result.exit_code == 1, shown
    assert broken.expected in found, shown
    assert found <= {broken.expected} | broken.also, shown
    for finding in result.findings:  # every finding says what came and what the document says, in words
        assert finding.message.startswith("Received: ") and "\nDocumented: " in finding.message, shown
        assert not {"None", "b'", 'b"'} & set(finding.message.replace("(", " ").split()), shown
        if finding.check in SOURCED:
            assert SOURCE.search(finding.message.split("\nDocumented: ", 1)[1]), shown
    severities = {f.severity for f in result.findings if f.check == broken.expected}
    assert broken.severity in severities, shown
    if broken.severity == "warning":
        assert severities == {"warning"} and not result.failures, shown
        # The same campaign, not strict, passes: warnings do not fail it.
        app = running.start(broken.app(Settings(db_path=str(tmp_path / "again.sqlite3"))))
        lenient = run_campaign(Target(broken.role, app=app), max_examples=25, seed=7)
        assert lenient.exit_code == 0 and lenient.warnings, render_finding(lenient.findings[0])


def test_every_check_is_the_one_named_by_some_broken_partner():
    covered = {broken.expected for broken in BROKEN}
    assert covered == {info.name for info in CHECKS}
