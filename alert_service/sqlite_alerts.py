"""Alerts, incidents and rule sightings in one SQLite file; ``transaction`` is BEGIN IMMEDIATE."""

from __future__ import annotations

from pathlib import Path

from alert_service.sql_alerts import SqlAlertStore
from alert_service.sqlite_db import SqliteDatabase
from facewire.storage.migrate import migrate_sqlite
from facewire.storage.sql import SQLITE


class SqliteAlertStore(SqlAlertStore):
    """AlertStore on one SQLite file; the write transaction (BEGIN IMMEDIATE) lets replicas decide one at a time."""

    def __init__(self, path: Path) -> None:
        database = SqliteDatabase(path)
        with database.lock:
            migrate_sqlite(database.db, "alerts")  # facewire/storage/migrations/sqlite/alerts
        super().__init__(database, SQLITE)
