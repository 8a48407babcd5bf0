"""Every check catches the partner with its fault, and names it; no broken partner passes."""

from __future__ import annotations

import pytest

from mpesa_atm.fuzz import CHECKS, Target, render_finding, run_campaign
from mpesa_atm.settings import Settings
from tests.fuzz.partners import BROKEN, Broken


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
def test_fuzzer_fails_the_broken_partner_and_names_its_check(broken: Broken, tmp_path, credentials):
    app = broken.app(Settings(db_path=str(tmp_path / "partner.sqlite3")))
    target = Target(broken.role, app=app, credentials=credentials if broken.role == "ipg" else None)

    result = run_campaign(target, max_examples=25, seed=7)

    found = {finding.check for finding in result.findings}
    shown = "\n\n".join(render_finding(finding) for finding in result.findings)
    assert result.exit_code == 1
    assert broken.expected in found, shown
    assert found <= {broken.expected} | broken.also, shown


def test_every_check_is_the_one_named_by_some_broken_partner():
    covered = {broken.expected for broken in BROKEN}
    assert covered == {info.name for info in CHECKS}
