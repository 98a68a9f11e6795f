"""The detection log in PostgreSQL: COPY into a temporary table, then INSERT ... ON CONFLICT (node, seq) DO NOTHING.

Same tables and indexes as :mod:`alert_service.sqlite_log` (migrations
``facewire/storage/migrations/postgresql/results``); every replica of the
recorder writes into the one database, and a redelivered or twice-received
result never adds a second row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from alert_service.sqlite_log import COLUMNS, DELETE_CHUNK, _row, _values, _where
from alert_service.store import Confirmation, LogQuery, LogRow, ResultLog
from facewire.storage.postgres import PostgresDatabase

STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS results_in (node TEXT, seq BIGINT, track BIGINT, frame BIGINT,"
    " ts DOUBLE PRECISION, decided_at DOUBLE PRECISION, name TEXT, known INTEGER, score DOUBLE PRECISION,"
    " threshold DOUBLE PRECISION, gallery_version TEXT, model TEXT, candidates TEXT,"
    " recorded_at DOUBLE PRECISION) ON COMMIT DELETE ROWS"
)
FETCH_ROWS = 5000


class PostgresResultLog(ResultLog):
    """ResultLog on a PostgreSQL database shared by every recorder replica."""

    def __init__(self, url: str) -> None:
        self.database = PostgresDatabase(url, "results")

    def insert(self, rows: Sequence[LogRow]) -> int:
        if not rows:
            return 0
        now = time.time()
        with self.database.write() as db:
            db.execute(STAGE)
            with db.cursor().copy(f"COPY results_in ({COLUMNS}, recorded_at) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((*_values(row), now))
            # sorted, so replicas inserting overlapping batches take the key locks in one order (no deadlock)
            cursor = db.execute(
                f"INSERT INTO results ({COLUMNS}, recorded_at) SELECT {COLUMNS}, recorded_at FROM results_in"
                " ORDER BY node, seq ON CONFLICT (node, seq) DO NOTHING"
            )
            return max(cursor.rowcount, 0)

    def query(self, query: LogQuery) -> Iterator[LogRow]:
        where, params = _where(query)
        sql = f"SELECT {COLUMNS} FROM results {where.replace('?', '%s')} ORDER BY ts DESC"
        if query.limit > 0:
            with self.database.read() as db:
                records = db.execute(f"{sql} LIMIT {int(query.limit)}".encode(), params).fetchall()
            yield from (_row(r) for r in records)
            return
        yield from self._stream(sql, params)

    def _stream(self, sql: str, params: list[Any]) -> Iterator[LogRow]:
        """All rows of an unbounded query through a server-side cursor (memory stays flat on exports)."""
        with self.database.write() as db, db.cursor(name="facewire_export") as cursor:
            cursor.itersize = FETCH_ROWS
            cursor.execute(sql.encode(), params)
            for record in cursor:
                yield _row(record)

    def last_seen(self, person: str) -> LogRow | None:
        return next(iter(self.query(LogQuery(person=person, limit=1))), None)

    def count(self) -> int:
        with self.database.read() as db:
            row = db.execute("SELECT count(*) FROM results").fetchone()
        return int(row[0]) if row else 0

    def enforce_retention(self, max_age_days: float, max_rows: int, now: float) -> int:
        deleted = 0
        if max_age_days > 0:
            cutoff = now - max_age_days * 86400.0
            deleted += self._delete_chunks("SELECT id FROM results WHERE ts < %s LIMIT %s", cutoff)
        if max_rows > 0:
            with self.database.read() as db:
                found = db.execute("SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET %s", (max_rows,)).fetchone()
            if found is not None:
                deleted += self._delete_chunks("SELECT id FROM results WHERE id <= %s ORDER BY id LIMIT %s", found[0])
        return deleted

    def _delete_chunks(self, select: str, bound: float) -> int:
        """Delete in short transactions so writers are not held up by a long purge."""
        deleted = 0
        while True:
            with self.database.write() as db:
                count = db.execute(
                    f"DELETE FROM results WHERE id IN ({select})".encode(), (bound, DELETE_CHUNK)
                ).rowcount
            deleted += count
            if count < DELETE_CHUNK:
                return deleted

    def confirm(self, node: str, seq: int, truth: str | None, now: float) -> None:
        """Replace any earlier verdict; the new one gets a new id (as SQLite's INSERT OR REPLACE does)."""
        with self.database.write() as db:
            db.execute("DELETE FROM confirmations WHERE node = %s AND seq = %s", (node, seq))
            db.execute(
                "INSERT INTO confirmations (node, seq, truth, confirmed_at) VALUES (%s, %s, %s, %s)",
                (node, seq, truth, now),
            )

    def confirmations_after(self, last_id: int) -> list[Confirmation]:
        columns = ", ".join(f"r.{c.strip()}" for c in COLUMNS.split(","))
        sql = (
            f"SELECT c.id, c.node, c.seq, c.truth, r.id, {columns} FROM confirmations c"
            " LEFT JOIN results r ON r.node = c.node AND r.seq = c.seq WHERE c.id > %s ORDER BY c.id"
        )
        with self.database.read() as db:
            records = db.execute(sql.encode(), (last_id,)).fetchall()
        return [Confirmation(r[0], r[1], r[2], r[3], None if r[4] is None else _row(r[5:])) for r in records]

    def erase_person(self, person: str, marker: str) -> int:
        quoted, replacement = json.dumps(person), json.dumps(marker)
        with self.database.write() as db:
            named = db.execute("UPDATE results SET name = %s WHERE name = %s", (marker, person)).rowcount
            db.execute(
                "UPDATE results SET candidates = replace(candidates, %s, %s) WHERE strpos(candidates, %s) > 0",
                (quoted, replacement, quoted),
            )
            db.execute("UPDATE confirmations SET truth = %s WHERE truth = %s", (marker, person))
        return int(named)

    def close(self) -> None:
        self.database.close()
