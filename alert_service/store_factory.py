"""The alert service's stores by database URL: a SQLite file (path or ``sqlite:///``) or ``postgresql://``."""

from __future__ import annotations

from pathlib import Path

from alert_service.store import AlertStore, ResultLog
from facewire.storage.url import parse_database_url


def open_result_log(database: Path | str) -> ResultLog:
    """The detection log at ``database``."""
    target = parse_database_url(database)
    if target.engine == "postgresql":
        from alert_service.pg_log import PostgresResultLog  # psycopg only where PostgreSQL is used

        return PostgresResultLog(target.url)
    from alert_service.sqlite_log import SqliteResultLog

    assert target.path is not None
    return SqliteResultLog(target.path)


def open_alert_store(database: Path | str) -> AlertStore:
    """The alert store at ``database``."""
    target = parse_database_url(database)
    if target.engine == "postgresql":
        from alert_service.pg_alerts import PostgresAlertStore

        return PostgresAlertStore(target.url)
    from alert_service.sqlite_alerts import SqliteAlertStore

    assert target.path is not None
    return SqliteAlertStore(target.path)
