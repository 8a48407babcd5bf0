"""The store a mock opens closes with the app's lifespan (uvicorn's shutdown), not when the app is
garbage collected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mpesa_atm.mocks import create_app
from mpesa_atm.settings import Settings


def open_files_under(folder: Path) -> list[str]:
    """The files under `folder` this process has open (the database, its WAL, lock and journal files)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc to list the open files")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # the listing's own descriptor, closed meanwhile
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.parametrize("role", ["bank", "ipg"])
def test_the_store_a_mock_opened_closes_when_its_lifespan_ends(tmp_path, role):
    app = create_app(role, Settings(db_path=str(tmp_path / "mocks.sqlite3")))
    with TestClient(app) as client:  # runs the lifespan: startup, then shutdown on leaving
        client.post("/_harness/reset")
        client.get("/_harness/journal")  # the journal's files opened too
        assert open_files_under(tmp_path)
    assert open_files_under(tmp_path) == []
