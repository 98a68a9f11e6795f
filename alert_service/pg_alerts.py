"""Alerts, incidents and rule sightings in PostgreSQL, shared by every alert-service replica.

``transaction`` takes one advisory lock (the counterpart of SQLite's BEGIN
IMMEDIATE), so replicas decide one sighting at a time; the UNIQUE incident key
makes a second ``open_incident`` of the same incident a no-op either way.
"""

from __future__ import annotations

import psycopg

from alert_service.sql_alerts import SqlAlertStore
from facewire.storage.postgres import PostgresDatabase
from facewire.storage.sql import POSTGRESQL

DECIDE_LOCK = 0x66616C74  # pg_advisory_xact_lock key of the alert engine's read-decide-write step


class PostgresAlertStore(SqlAlertStore):
    """AlertStore on a PostgreSQL database; safe for replicas on several machines."""

    def __init__(self, url: str) -> None:
        super().__init__(PostgresDatabase(url, "alerts"), POSTGRESQL)

    def lock(self, db: psycopg.Connection) -> None:
        db.execute("SELECT pg_advisory_xact_lock(%s)", (DECIDE_LOCK,))
