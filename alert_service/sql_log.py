"""The detection log's SQL, written once for SQLite and PostgreSQL; each engine adds its bulk insert and export stream.

Tables and indexes: ``facewire/storage/migrations/<engine>/results``. Rows are
unique by (node, seq), so a redelivered result never adds a second row.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from alert_service.store import Confirmation, LogQuery, LogRow, ResultLog
from facewire.schema import Candidate
from facewire.storage.sql import Database, Dialect

COLUMNS = "node, seq, track, frame, ts, decided_at, name, known, score, threshold, gallery_version, model, candidates"
DELETE_CHUNK = 5000
NEWEST_ROWS = 1000  # the newest result is looked for among the rows written last (batches mix their order)


class SqlResultLog(ResultLog):
    """ResultLog on ``database``, statements spelled in ``dialect``."""

    def __init__(self, database: Database, dialect: Dialect) -> None:
        self.database = database
        self.dialect = dialect

    @abstractmethod
    def stream(self, sql: str, params: Sequence[Any]) -> Iterator[LogRow]:
        """Every row of ``sql`` (already in this dialect), read without holding all of them in memory."""

    def query(self, query: LogQuery) -> Iterator[LogRow]:
        where, params = where_clause(query)
        sql = self.dialect.sql(f"SELECT {COLUMNS} FROM results {where} ORDER BY ts DESC")
        if query.limit <= 0:
            yield from self.stream(sql, params)
            return
        with self.database.read() as db:
            records = db.execute(f"{sql} LIMIT {int(query.limit)}", params).fetchall()
        yield from (log_row(r) for r in records)

    def last_seen(self, person: str) -> LogRow | None:
        return next(iter(self.query(LogQuery(person=person, limit=1))), None)

    def count(self) -> int:
        with self.database.read() as db:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])

    def newest_decided_at(self) -> float | None:
        latest = f"SELECT decided_at FROM results ORDER BY id DESC LIMIT {NEWEST_ROWS}"
        with self.database.read() as db:
            newest = db.execute(f"SELECT max(decided_at) FROM ({latest}) AS latest").fetchone()[0]
        return None if newest is None else float(newest)

    def enforce_retention(self, max_age_days: float, max_rows: int, now: float) -> int:
        deleted = 0
        if max_age_days > 0:
            cutoff = now - max_age_days * 86400.0
            deleted += self._delete_chunks("SELECT id FROM results WHERE ts < ? LIMIT ?", cutoff)
        if max_rows > 0:
            with self.database.read() as db:
                found = db.execute(
                    self.dialect.sql("SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET ?"), (max_rows,)
                ).fetchone()
            if found is not None:
                deleted += self._delete_chunks("SELECT id FROM results WHERE id <= ? ORDER BY id LIMIT ?", found[0])
        return deleted

    def _delete_chunks(self, select: str, bound: float) -> int:
        """Delete in short transactions so writers are not held up by a long purge."""
        deleted = 0
        sql = self.dialect.sql(f"DELETE FROM results WHERE id IN ({select})")
        while True:
            with self.database.write() as db:
                count = int(db.execute(sql, (bound, DELETE_CHUNK)).rowcount)
            deleted += count
            if count < DELETE_CHUNK:
                return deleted

    def confirm(self, node: str, seq: int, truth: str | None, now: float) -> None:
        """Replace any earlier verdict; the new one gets a new, higher id (confirmation ids only grow)."""
        with self.database.write() as db:
            db.execute(self.dialect.sql("DELETE FROM confirmations WHERE node = ? AND seq = ?"), (node, seq))
            db.execute(
                self.dialect.sql("INSERT INTO confirmations (node, seq, truth, confirmed_at) VALUES (?, ?, ?, ?)"),
                (node, seq, truth, now),
            )

    def confirmations_after(self, last_id: int) -> list[Confirmation]:
        columns = ", ".join(f"r.{c.strip()}" for c in COLUMNS.split(","))
        sql = (
            f"SELECT c.id, c.node, c.seq, c.truth, r.id, {columns} FROM confirmations c"
            " LEFT JOIN results r ON r.node = c.node AND r.seq = c.seq WHERE c.id > ? ORDER BY c.id"
        )
        with self.database.read() as db:
            records = db.execute(self.dialect.sql(sql), (last_id,)).fetchall()
        return [Confirmation(r[0], r[1], r[2], r[3], None if r[4] is None else log_row(r[5:])) for r in records]

    def erase_person(self, person: str, marker: str) -> int:
        quoted, replacement = json.dumps(person), json.dumps(marker)
        sql = self.dialect.sql
        with self.database.write() as db:
            named = db.execute(sql("UPDATE results SET name = ? WHERE name = ?"), (marker, person)).rowcount
            mentioned = self.dialect.contains_sql("candidates")
            db.execute(
                sql(f"UPDATE results SET candidates = replace(candidates, ?, ?) WHERE {mentioned}"),
                (quoted, replacement, quoted),
            )
            db.execute(sql("UPDATE confirmations SET truth = ? WHERE truth = ?"), (marker, person))
        return int(named)

    def close(self) -> None:
        self.database.close()


def where_clause(query: LogQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (``?`` placeholders) and parameters of ``query``'s filters."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("name = ?", query.person),
        ("node = ?", query.node),
        ("ts >= ?", query.since),
        ("ts < ?", query.until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if query.unknown_only:
        clauses.append("known = 0")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def row_values(row: LogRow) -> tuple[Any, ...]:
    """The values of ``row`` in :data:`COLUMNS` order."""
    candidates = json.dumps([[c.name, round(c.score, 5)] for c in row.candidates], separators=(",", ":"))
    return (
        row.node,
        row.seq,
        row.track,
        row.frame,
        row.ts,
        row.decided_at,
        row.name,
        int(row.known),
        row.score,
        row.threshold,
        row.gallery_version,
        row.model,
        candidates,
    )


def log_row(record: Sequence[Any]) -> LogRow:
    """A LogRow from a record in :data:`COLUMNS` order."""
    candidates = tuple(Candidate(str(name), float(score)) for name, score in json.loads(record[12]))
    return LogRow(
        node=record[0],
        seq=record[1],
        track=record[2],
        frame=record[3],
        ts=record[4],
        decided_at=record[5],
        name=record[6],
        known=bool(record[7]),
        score=record[8],
        threshold=record[9],
        gallery_version=record[10],
        model=record[11],
        candidates=candidates,
    )
