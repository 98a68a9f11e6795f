"""A real PostgreSQL server for the storage tests: initdb + pg_ctl in a temp dir, on a free loopback port.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
system user (made by Debian's postgresql package). Tests using it skip with a
message where the binaries are absent (install: apt-get install postgresql).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.postgres import PostgresServer, postgres_bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; skips with a message where PostgreSQL is not installed."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql): PostgreSQL tests skipped")
    pytest.importorskip("psycopg", reason='psycopg not installed (pip install -e ".[postgres]")')
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both engines: a SQLite file URL, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'facewire.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
