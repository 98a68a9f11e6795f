"""The detection log in PostgreSQL: COPY into a temporary table, then INSERT ... ON CONFLICT (node, seq) DO NOTHING.

Every replica of the recorder writes into the one database (migrations
``facewire/storage/migrations/postgresql/results``); COPY is the fast path of
the recorder's batches (docs/storage.md, BENCHMARKS.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from alert_service.sql_log import COLUMNS, SqlResultLog, log_row, row_values
from alert_service.store import LogRow
from facewire.storage.postgres import PostgresDatabase
from facewire.storage.sql import POSTGRESQL

STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS results_in (node TEXT, seq BIGINT, track BIGINT, frame BIGINT,"
    " ts DOUBLE PRECISION, decided_at DOUBLE PRECISION, name TEXT, known INTEGER, score DOUBLE PRECISION,"
    " threshold DOUBLE PRECISION, gallery_version TEXT, model TEXT, candidates TEXT,"
    " recorded_at DOUBLE PRECISION) ON COMMIT DELETE ROWS"
)
FETCH_ROWS = 5000


class PostgresResultLog(SqlResultLog):
    """ResultLog on a PostgreSQL database shared by every recorder replica."""

    database: PostgresDatabase

    def __init__(self, url: str) -> None:
        super().__init__(PostgresDatabase(url, "results"), POSTGRESQL)

    def insert(self, rows: Sequence[LogRow]) -> int:
        if not rows:
            return 0
        now = time.time()
        with self.database.write() as db:
            db.execute(STAGE)
            with db.cursor().copy(f"COPY results_in ({COLUMNS}, recorded_at) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((*row_values(row), now))
            # sorted, so replicas inserting overlapping batches take the key locks in one order (no deadlock)
            cursor = db.execute(
                f"INSERT INTO results ({COLUMNS}, recorded_at) SELECT {COLUMNS}, recorded_at FROM results_in"
                " ORDER BY node, seq ON CONFLICT (node, seq) DO NOTHING"
            )
            return max(cursor.rowcount, 0)

    def stream(self, sql: str, params: Sequence[Any]) -> Iterator[LogRow]:
        """Through a server-side cursor, so memory stays flat on exports."""
        with self.database.write() as db, db.cursor(name="facewire_export") as cursor:
            cursor.itersize = FETCH_ROWS
            cursor.execute(sql.encode(), params)
            for record in cursor:
                yield log_row(record)
