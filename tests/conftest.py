"""Loads the fixture modules; every test's store lives under its own tmp_path."""

import pytest
from hypothesis.internal.conjecture import providers as _providers

pytest_plugins = [
    "tests.fixtures.mocks",
    "tests.fixtures.servers",
    "tests.fixtures.postgres",
    "tests.fixtures.tls",
    "tests.fixtures.command",
    "tests.contracts.fixtures",
]

# Hypothesis now and then draws string constants it finds in the source of "local" modules. Installed from
# a wheel (tox, CI), the harness is in site-packages and nothing is local; with the editable install of
# development, our own source is, so a seed's cases changed with every edit of src/ and a campaign could
# send the test password (a constant of settings.py) in another field. Nothing local, as in CI. (A private
# hook: if Hypothesis renames it, this does nothing and the editable install mines again.)
if hasattr(_providers, "_get_local_constants") and hasattr(_providers, "_local_constants"):
    _providers._get_local_constants = lambda: _providers._local_constants

# The modules whose tests took longest, slowest first (`pytest -n 4 --durations=80` of the whole suite,
# each module's share summed, 2026-12-07). Collected in folder order they came last or late, and
# pytest-xdist's workers ended the run one by one on them while the others sat idle: started first,
# the short tests fill the gaps instead. A module missing here only runs in its usual place.
_SLOWEST_FIRST = (
    "tests/reliability/test_shared_sandbox.py",
    "tests/fuzz/test_token_rules.py",
    "tests/test_readme.py",
    "tests/fuzz/test_lenient_partners.py",
    "tests/mocks/test_control_conformance.py",
    "tests/fuzz/test_tokens.py",
    "tests/fuzz/test_campaign.py",
    "tests/fuzz/test_broken_partners.py",
    "tests/fuzz/test_answer_rules.py",
    "tests/proxy/test_workers.py",
    "tests/reliability/test_durability.py",
    "tests/fuzz/test_coverage.py",
    "tests/fuzz/test_command.py",
    "tests/reliability/test_password_hash_load.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest modules' tests first, in the order above (each module's own order kept)."""
    rank = {module: place for place, module in enumerate(_SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
