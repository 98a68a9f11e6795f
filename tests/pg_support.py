"""A real PostgreSQL server for the storage tests: initdb + pg_ctl in a temp dir, on a free loopback port.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
system user (made by Debian's postgresql package). Tests using it skip with a
message where the binaries are absent (install: apt-get install postgresql).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "facewire"
_databases = itertools.count(1)


def postgres_bindir() -> Path | None:
    """Folder holding initdb and pg_ctl (PATH first, then Debian's /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """A throw-away cluster: trust auth on 127.0.0.1 only, data and socket in one temp dir."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="facewire-pg-"))
        self.port = _free_port()
        self.runner: list[str] = []
        if os.geteuid() == 0:
            self.runner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        command = [*self.runner, str(self.bindir / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)

    def halt(self) -> None:
        """Stop the server (fast shutdown: open connections are cut), keeping its data."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


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
