"""Versioned schema migrations: ``migrations/<engine>/<component>/NNN_name.sql``, applied on start-up.

Each database keeps ``schema_version (component, version, name, applied_at)``.
Pending files are applied in order, each component in one transaction that
also holds the engine's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL
advisory lock), so replicas starting together migrate once. Both engines have
the same numbered files with the same logical schema.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from facewire.errors import ConfigError
from facewire.storage.url import Engine

if TYPE_CHECKING:
    import psycopg

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT NOT NULL, version INTEGER NOT NULL,"
    " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (component, version))"
)
PG_LOCK = 0x66616365  # pg_advisory_xact_lock key shared by every facewire migration


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file split into single statements (so both drivers run them inside one transaction)."""
        found, current = [], ""
        for line in self.sql.splitlines(keepends=True):
            if line.lstrip().startswith("--"):
                continue
            current += line
            if sqlite3.complete_statement(current):
                found.append(current.strip())
                current = ""
        if current.strip():
            found.append(current.strip())
        return found


def migrations(engine: Engine, component: str) -> list[Migration]:
    """Every migration of ``component`` on ``engine``, numbered 1..n without gaps."""
    found = []
    for path in sorted((MIGRATIONS / engine / component).glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path.read_text()))
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ConfigError(f"migrations of {engine}/{component} are not numbered 1..n")
    return found


def latest(component: str) -> int:
    return len(migrations("sqlite", component))


def _pending(engine: Engine, component: str, current: int, upto: int | None) -> list[Migration]:
    known = migrations(engine, component)
    if current > len(known):
        raise ConfigError(
            f"the {component} schema is at version {current}, newer than this facewire knows ({len(known)})"
        )
    return [m for m in known if current < m.version <= (upto or len(known))]


def migrate_sqlite(db: sqlite3.Connection, component: str, upto: int | None = None) -> int:
    """Bring ``component`` up to date (or to ``upto``) in one BEGIN IMMEDIATE; returns the version reached."""
    if db.in_transaction:
        db.commit()
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(VERSION_TABLE)
        current = _sqlite_version(db, component)
        for migration in _pending("sqlite", component, current, upto):
            for statement in migration.statements():
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?, ?)",
                (component, migration.version, migration.name, time.time()),
            )
            current = migration.version
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return current


def _sqlite_version(db: sqlite3.Connection, component: str) -> int:
    row = db.execute("SELECT coalesce(max(version), 0) FROM schema_version WHERE component = ?", (component,))
    return int(row.fetchone()[0])


def migrate_postgres(conn: psycopg.Connection, component: str, upto: int | None = None) -> int:
    """Bring ``component`` up to date (or to ``upto``) in one transaction under an advisory lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK,))
        conn.execute(VERSION_TABLE)
        row = conn.execute(
            "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = %s", (component,)
        ).fetchone()
        current = int(row[0]) if row else 0
        for migration in _pending("postgresql", component, current, upto):
            for statement in migration.statements():
                conn.execute(statement.encode())
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, %s, %s, %s)",
                (component, migration.version, migration.name, time.time()),
            )
            current = migration.version
    return current
