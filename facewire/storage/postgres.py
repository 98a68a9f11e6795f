"""A PostgreSQL database shared by every replica: a psycopg 3 connection pool, migrated on open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from facewire.errors import ConfigError
from facewire.storage.migrate import PG_LOCK, migrate_postgres
from facewire.storage.url import postgres_conninfo, redact

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError('a postgresql:// database needs: pip install "facewire[postgres]"') from exc

CONNECT_TIMEOUT = 15.0


class PostgresDatabase:
    """A small pool of autocommit connections; ``write`` is one transaction, ``read`` a plain connection.

    ``schema`` (optional) puts this store's tables in their own PostgreSQL schema
    (the shared gallery's ``gallery``), selected through the connections' search_path;
    ``name`` is the connections' application_name.
    """

    def __init__(self, url: str, component: str, max_size: int = 4, schema: str = "", name: str = "") -> None:
        self.url = url
        conninfo = postgres_conninfo(url)
        kwargs: dict[str, object] = {"autocommit": True}
        if name:
            kwargs["application_name"] = name  # shown in pg_stat_activity
        if schema:
            kwargs["options"] = f"-c search_path={schema}"
        self.pool = ConnectionPool(conninfo, min_size=1, max_size=max_size, kwargs=kwargs, open=False)
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout as exc:
            self.pool.close()
            raise ConfigError(f"cannot connect to {redact(url)} within {CONNECT_TIMEOUT:.0f} s") from exc
        with self.pool.connection() as conn:
            if schema:
                with conn.transaction():  # replicas starting together: one creates it, the others wait
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK,))
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'.encode())
            self.fresh = _version(conn, component) == 0
            self.version = migrate_postgres(conn, component)

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block ends, rolled back on error."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()


def _version(conn: psycopg.Connection, component: str) -> int:
    """The schema version of ``component`` before migrating (0: a new store)."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(
        "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = %s", (component,)
    ).fetchone()
    return int(row[0]) if row else 0
