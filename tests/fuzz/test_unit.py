"""A unit's Hypothesis settings: a campaign sends the same cases whatever Hypothesis profile is loaded;
how a unit ends once the partner stopped answering."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import settings
from hypothesis.errors import FlakyFailure

from mpesa_atm.fuzz import Target, run_campaign
from mpesa_atm.fuzz import unit as unit_module
from mpesa_atm.fuzz.bounds import Bounds, Stopper
from mpesa_atm.fuzz.unit import Stop, Unit
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


def _sent(tmp_path, name: str, running) -> tuple[list[tuple[str, str, object]], list[tuple[str, str]]]:
    app = running.start(create_app("bank", Settings(db_path=str(tmp_path / f"{name}.sqlite3"))))
    result = run_campaign(Target("bank", app=app), max_examples=12, seed=5)
    return (
        [(case.operation, case.kind, case.body) for case in result.sent],
        [(finding.check, finding.operation) for finding in result.findings],
    )


@pytest.mark.parametrize("profile", ["ci", _OTHER_PROFILE])
def test_the_same_seed_sends_the_same_cases_whatever_hypothesis_profile_is_loaded(
    profile, tmp_path, load_profile, running
):
    load_profile("default")
    expected = _sent(tmp_path, "default", running)
    load_profile(profile)

    assert _sent(tmp_path, profile, running) == expected


def _campaign() -> SimpleNamespace:
    """What a Unit reads of its campaign: the target, the seed and the bounds' Stopper (none)."""
    return SimpleNamespace(
        target=Target("bank", url="http://127.0.0.1:9"),
        seed=1,
        collector=SimpleNamespace(stopper=Stopper(Bounds())),
    )


def _stopped_unit(error: Exception) -> Unit:
    """A unit whose phases stop it (the partner stopped answering) and then end with `error`."""

    def body(unit: Unit) -> None:
        unit.stopped = True
        raise error

    campaign = _campaign()
    return Unit(campaign, "bank", "edges", (), body)  # type: ignore[arg-type]


def test_a_stopped_unit_ends_quietly_on_stop_and_logs_any_other_error_once(caplog, monkeypatch):
    monkeypatch.setattr(unit_module, "_LOGGED", set())
    flaky = FlakyFailure("Hypothesis saw the unit stop", [Stop()])
    for error in (Stop(), flaky, ExceptionGroup("stops", [Stop(), Stop()]), KeyError("x"), KeyError("y")):
        _stopped_unit(error).run()
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("mpesa_atm.fuzz", "bank edges failed after it stopped")
    ]
    with pytest.raises(KeyError):  # not stopped: the error is the campaign's
        Unit(
            _campaign(),
            "bank",
            "edges",
            (),
            lambda unit: {}["x"],
        ).run()
