"""The PostgreSQL fixtures: a URL that connects, a fresh empty database for each test, dropped after it
even with a session left open; the server's programs found where Debian and pg_config put them; and
without them or psycopg a skip that says why, a failure in CI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures import postgres, postgres_cluster

# The databases the tests below had, so that each can check its predecessors' were dropped.
_EARLIER_DATABASES: list[str] = []


def _connect(url):
    return postgres.psycopg_module().connect(url, autocommit=True)


def _database_exists(server: postgres.PostgresServer, name: str) -> bool:
    with _connect(server.url("postgres")) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_the_url_connects_as_postgres_to_the_database_it_names(postgres_url):
    with _connect(postgres_url) as connection:
        database, user = connection.execute("SELECT current_database(), current_user").fetchone()
        assert postgres_url == f"postgresql://postgres@127.0.0.1:{connection.info.port}/{database}"
        assert user == "postgres"
        # DROP DATABASE ... WITH (FORCE), which the fixture's teardown runs, came with PostgreSQL 13.
        assert connection.info.server_version >= 130000


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_fresh_empty_database(postgres_url, postgres_server, turn):
    with _connect(postgres_url) as connection:
        (database,) = connection.execute("SELECT current_database()").fetchone()
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert tables == []
        # Left behind on purpose: the other turn's database must not have it.
        connection.execute("CREATE TABLE left_behind (turn text)")
        connection.execute("INSERT INTO left_behind VALUES (%s)", (turn,))

    assert database not in _EARLIER_DATABASES
    assert [name for name in _EARLIER_DATABASES if _database_exists(postgres_server, name)] == []
    _EARLIER_DATABASES.append(database)


def test_a_database_is_dropped_with_a_session_still_open_in_it(postgres_server):
    name = postgres_server.create_database()
    with _connect(postgres_server.url(name)) as left_open:
        postgres_server.drop_database(name)

        assert not _database_exists(postgres_server, name)
        # The drop ended the session it found there: the server has gone from under the connection.
        with pytest.raises(postgres.psycopg_module().OperationalError):
            left_open.execute("SELECT 1")


def _fake_programs(folder: Path, *programs: str) -> Path:
    folder.mkdir(parents=True)
    for program in programs:
        (folder / program).write_text("#!/bin/sh\n")
        (folder / program).chmod(0o755)
    return folder


def test_the_highest_debian_version_serves_when_pg_config_names_a_folder_without_the_server(
    monkeypatch, tmp_path
):
    # libpq-dev brings a pg_config whose bindir has no initdb: it must not stop the search.
    client_only = _fake_programs(tmp_path / "client", "psql")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "pg_config").write_text(f"#!/bin/sh\necho {client_only}\n")
    (tools / "pg_config").chmod(0o755)
    debian = tmp_path / "postgresql"
    _fake_programs(debian / "13" / "bin", *postgres_cluster.PROGRAMS)
    newest = _fake_programs(debian / "16" / "bin", *postgres_cluster.PROGRAMS)
    _fake_programs(debian / "17" / "bin", "initdb", "pg_ctl")  # no postgres: half an installation
    monkeypatch.setattr(postgres_cluster, "DEBIAN_VERSIONS", debian)
    monkeypatch.setenv("PATH", str(tools))

    assert postgres.postgres_programs() == newest


def _without_server_programs(monkeypatch, tmp_path):
    monkeypatch.setattr(postgres_cluster.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres_cluster, "DEBIAN_VERSIONS", tmp_path)


def test_without_the_server_programs_a_test_skips_with_the_reason(monkeypatch, tmp_path):
    _without_server_programs(monkeypatch, tmp_path)
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match=r"no PostgreSQL server programs .*apt-get install"):
        postgres.postgres_programs()


def test_without_the_server_programs_in_ci_a_test_fails(monkeypatch, tmp_path):
    _without_server_programs(monkeypatch, tmp_path)
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI=true but no PostgreSQL server programs"):
        postgres.postgres_programs()


def test_without_psycopg_a_test_skips_with_the_reason_and_fails_in_ci(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` finds: ImportError
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"psycopg is not installed .*\[postgres\]"):
        postgres.psycopg_module()

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but psycopg is not installed"):
        postgres.psycopg_module()
