"""The detection log in SQLite: one file in WAL mode, INSERT OR IGNORE on UNIQUE(node, seq)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alert_service.sql_log import COLUMNS, SqlResultLog, log_row, row_values
from alert_service.sqlite_db import SqliteDatabase
from alert_service.store import LogRow
from facewire.storage.migrate import migrate_sqlite
from facewire.storage.sql import SQLITE


class SqliteResultLog(SqlResultLog):
    """ResultLog on one SQLite file (WAL; safe for several recorder processes)."""

    database: SqliteDatabase

    def __init__(self, path: Path) -> None:
        database = SqliteDatabase(path)
        with database.lock:
            migrate_sqlite(database.db, "results")  # facewire/storage/migrations/sqlite/results
        super().__init__(database, SQLITE)

    def insert(self, rows: Sequence[LogRow]) -> int:
        now = time.time()
        values = [(*row_values(row), now) for row in rows]
        with self.database.write() as db:
            before = db.total_changes
            db.executemany(
                f"INSERT OR IGNORE INTO results ({COLUMNS}, recorded_at) VALUES ({', '.join('?' * 14)})", values
            )
            return db.total_changes - before

    def stream(self, sql: str, params: Sequence[Any]) -> Iterator[LogRow]:
        """Read on a private connection, so the lock is not held while exporting."""
        db = sqlite3.connect(f"file:{self.database.path}?mode=ro", uri=True)
        try:
            for record in db.execute(sql, params):
                yield log_row(record)
        finally:
            db.close()
