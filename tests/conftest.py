"""Loads the fixture modules; every test's store lives under its own tmp_path."""

pytest_plugins = [
    "tests.fixtures.mocks",
    "tests.fixtures.servers",
    "tests.fixtures.tls",
    "tests.contracts.fixtures",
]
