"""Upstream Schemathesis's own CLI against each mock's control API, served for real: no failure."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from mpesa_atm.operations import ROLES
from mpesa_atm.spec import load_spec

pytestmark = pytest.mark.network

TOKEN = "conformance-token"
# A fixed seed: the same cases every run, so that a failure reproduces (a flaky test is a bug).
ST_RUN = [
    *("--checks", "all"),
    *("--max-examples", "10"),
    *("--seed", "20250101"),
    *("--generation-database", "none"),
    "--no-color",
]


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_cli_finds_no_failure_in_the_control_api(serve, tmp_path, role):
    """`st run <url>/_harness/openapi.json --checks all`, as a user would type it, against one role.

    Every operation is run, none excluded or accepted as failing:
    - both mocks are served by one `mpesa-atm serve`, wired: the iPG's /withdrawals calls the bank's
      Token Generation for real; the bank's /redemptions and /reversals name tokens Schemathesis
      cannot know, so they answer the documented 404 (Schemathesis warns "missing test data");
    - /reset, /faults and /modes change the state of the mock under test only, and each role's run
      has its own `serve` (a fresh store): a rule one run leaves (break every call) cannot reach the
      other's drivers;
    - with a control token, so that the `ignored_auth` check sends calls without it and expects the
      documented 401.
    10 examples an operation: the coverage phase's cases do not depend on it, and a 500 planted for
    one value in three of a fault rule's `times` (2 to 999,999) was still found in both roles' runs.
    """
    served = serve("--control-token", TOKEN)
    url = served.urls[role]
    assert httpx.get(f"{url}/_harness/health").status_code == 200
    result = subprocess.run(
        [
            *(sys.executable, "-m", "schemathesis.cli", "run", f"{url}/_harness/openapi.json"),
            *ST_RUN,
            *("--header", f"Authorization: Bearer {TOKEN}"),
        ],
        cwd=tmp_path,  # anything it writes stays in the test's folder
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-8000:]
    document = load_spec("control.yaml", role=role)
    count = sum(len(item) for item in document["paths"].values())
    assert f"Tested: {count}\n" in report, report[-8000:]  # every operation, none skipped
