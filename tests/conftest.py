"""Loads the fixture modules; every test's store lives under its own tmp_path."""

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
