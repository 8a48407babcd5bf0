"""A unit's Hypothesis settings: a campaign sends the same cases whatever Hypothesis profile is loaded."""

from __future__ import annotations

import pytest
from hypothesis import settings

from mpesa_atm.fuzz import Target, run_campaign
from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings

# A profile as a user's conftest, or an environment, may load: each field differs from the default.
_OTHER_PROFILE = "mpesa-atm-test-other"
settings.register_profile(
    _OTHER_PROFILE,
    derandomize=True,
    max_examples=7,
    print_blob=True,
    backend="hypothesis-urandom",  # draws from /dev/urandom, whatever the seed
)


@pytest.fixture
def load_profile():
    """Loads a Hypothesis profile for the test; the one loaded before comes back after it."""
    before = settings.get_current_profile_name()
    yield settings.load_profile
    settings.load_profile(before)


def _sent(tmp_path, name: str) -> tuple[list[tuple[str, str, object]], list[tuple[str, str]]]:
    app = create_app("bank", Settings(db_path=str(tmp_path / f"{name}.sqlite3")))
    result = run_campaign(Target("bank", app=app), max_examples=12, seed=5)
    return (
        [(case.operation, case.kind, case.body) for case in result.sent],
        [(finding.check, finding.operation) for finding in result.findings],
    )


@pytest.mark.parametrize("profile", ["ci", _OTHER_PROFILE])
def test_the_same_seed_sends_the_same_cases_whatever_hypothesis_profile_is_loaded(
    profile, tmp_path, load_profile
):
    load_profile("default")
    expected = _sent(tmp_path, "default")
    load_profile(profile)

    assert _sent(tmp_path, profile) == expected
