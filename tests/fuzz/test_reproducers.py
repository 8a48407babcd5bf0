"""Reproducers that reproduce (issue 22, item 7): the steps a lifecycle finding prints, run in bash
against a FRESH partner (a new database: none of the first run's tokens), meet the same failure. They
make a token of their own and quote it ($ref, $tx), where they used to quote the first run's reference,
which a fresh partner answers -9."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from mpesa_atm.fuzz import Target, render_finding, run_campaign
from mpesa_atm.fuzz.curl import PASSWORD_VARIABLE
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings
from tests.fuzz.partners import BROKEN, Faulty

_BROKEN = {broken.name: broken for broken in BROKEN}
EXAMPLES = 30  # lifecycles enough that seed 1 draws one paying or reversing a token twice

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs bash and curl"),
]


def _app(name: str, db_path: str, *, bank: bool):
    """The broken iPG `name`; with `bank`, one whose mock can have a bank generate tokens (withdrawals),
    else one that can only seed them."""
    broken = _BROKEN[name]
    if bank:
        return broken.app(Settings(db_path=db_path))
    return Faulty(create_app("ipg", Settings(db_path=db_path)), on_answer=broken.on_answer)


def _answers(output: str) -> list[dict]:
    """The JSON answers curl printed one after the other."""
    decoder, answers, at = json.JSONDecoder(), [], 0
    while at < len(output):
        if output[at].isspace():
            at += 1
            continue
        answer, at = decoder.raw_decode(output, at)
        answers.append(answer)
    return answers


@pytest.mark.parametrize(
    ("name", "bank"),
    [("redeems_twice", True), ("reverses_twice", True), ("redeems_twice", False)],
    ids=["redeems-twice-withdrawals", "reverses-twice-withdrawals", "redeems-twice-seeded"],
)
def test_a_lifecycle_reproducer_meets_the_same_failure_on_a_fresh_partner(
    name, bank, serve_app, tmp_path, credentials
):
    url = serve_app(_app(name, str(tmp_path / "first.sqlite3"), bank=bank))
    result = run_campaign(
        Target("ipg", url=url, credentials=credentials), max_examples=EXAMPLES, seed=1, phases=("stateful",)
    )
    shown = "\n\n".join(render_finding(finding) for finding in result.findings)
    (finding,) = [f for f in result.failures if f.check == "token_lifecycle"]
    received = finding.message.split("Received: ", 1)[1].split("\n", 1)[0]  # e.g. "0" (Success)
    code = json.loads(received.split(" ", 1)[0])

    steps = finding.reproduce
    made = "/_harness/withdrawals" if bank else "/_harness/tokens"
    assert made in steps[0 if bank else 2], shown
    assert all('"\'"$ref"\'"' in step for step in steps[3:]), shown  # every API call quotes the token made
    fresh = serve_app(_app(name, str(tmp_path / "fresh.sqlite3"), bank=bank))
    script = "\n".join(step.replace(url, fresh) for step in steps)
    ran = subprocess.run(
        ["bash", "-e", "-c", script],
        env={**os.environ, PASSWORD_VARIABLE: credentials.password},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    answers = _answers(ran.stdout)
    api = [answer for answer in answers if "output_ResponseCode" in answer]
    assert len(api) == len([s for s in steps if s.startswith("curl ") and "/_harness/" not in s]), ran.stdout
    assert api[-1]["output_ResponseCode"] == code, f"{script}\n{ran.stdout}"
    assert "-9" not in {answer["output_ResponseCode"] for answer in api}, f"{script}\n{ran.stdout}"
