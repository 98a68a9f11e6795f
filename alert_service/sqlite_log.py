"""The detection log in SQLite: UNIQUE(node, seq) + INSERT OR IGNORE, indexes for every ``facewire log`` filter."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alert_service.sqlite_db import SqliteDatabase
from alert_service.store import Confirmation, LogQuery, LogRow, ResultLog
from facewire.schema import Candidate
from facewire.storage.migrate import migrate_sqlite

COLUMNS = "node, seq, track, frame, ts, decided_at, name, known, score, threshold, gallery_version, model, candidates"
DELETE_CHUNK = 5000


class SqliteResultLog(ResultLog):
    """ResultLog on one SQLite file (WAL; safe for several recorder processes)."""

    def __init__(self, path: Path) -> None:
        self.database = SqliteDatabase(path)
        with self.database.lock:
            migrate_sqlite(self.database.db, "results")  # facewire/storage/migrations/sqlite/results

    def insert(self, rows: Sequence[LogRow]) -> int:
        now = time.time()
        values = [(*_values(row), now) for row in rows]
        with self.database.write() as db:
            before = db.total_changes
            db.executemany(
                f"INSERT OR IGNORE INTO results ({COLUMNS}, recorded_at) VALUES ({', '.join('?' * 14)})", values
            )
            return db.total_changes - before

    def query(self, query: LogQuery) -> Iterator[LogRow]:
        where, params = _where(query)
        sql = f"SELECT {COLUMNS} FROM results {where} ORDER BY ts DESC"
        if query.limit > 0:
            sql += f" LIMIT {int(query.limit)}"
        with self.database.read() as db:
            rows = db.execute(sql, params).fetchall() if query.limit > 0 else None
        if rows is not None:
            yield from (_row(r) for r in rows)
            return
        yield from self._stream(sql, params)

    def _stream(self, sql: str, params: list[Any]) -> Iterator[LogRow]:
        """All rows of an unbounded query, read on a private connection so the lock is not held while exporting."""
        db = sqlite3.connect(f"file:{self.database.path}?mode=ro", uri=True)
        try:
            for record in db.execute(sql, params):
                yield _row(record)
        finally:
            db.close()

    def last_seen(self, person: str) -> LogRow | None:
        return next(iter(self.query(LogQuery(person=person, limit=1))), None)

    def count(self) -> int:
        with self.database.read() as db:
            return int(db.execute("SELECT count(*) FROM results").fetchone()[0])

    def enforce_retention(self, max_age_days: float, max_rows: int, now: float) -> int:
        deleted = 0
        if max_age_days > 0:
            cutoff = now - max_age_days * 86400.0
            deleted += self._delete_chunks("SELECT id FROM results WHERE ts < ? LIMIT ?", cutoff)
        if max_rows > 0:
            with self.database.read() as db:
                found = db.execute("SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)).fetchone()
            if found is not None:
                deleted += self._delete_chunks("SELECT id FROM results WHERE id <= ? ORDER BY id LIMIT ?", found[0])
        return deleted

    def _delete_chunks(self, select: str, bound: float) -> int:
        """Delete in short transactions so writers are not held up by a long purge."""
        deleted = 0
        while True:
            with self.database.write() as db:
                count = db.execute(f"DELETE FROM results WHERE id IN ({select})", (bound, DELETE_CHUNK)).rowcount
            deleted += count
            if count < DELETE_CHUNK:
                return deleted

    def confirm(self, node: str, seq: int, truth: str | None, now: float) -> None:
        with self.database.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO confirmations (node, seq, truth, confirmed_at) VALUES (?, ?, ?, ?)",
                (node, seq, truth, now),
            )

    def confirmations_after(self, last_id: int) -> list[Confirmation]:
        columns = ", ".join(f"r.{c.strip()}" for c in COLUMNS.split(","))
        sql = (
            f"SELECT c.id, c.node, c.seq, c.truth, r.id, {columns} FROM confirmations c"
            " LEFT JOIN results r ON r.node = c.node AND r.seq = c.seq WHERE c.id > ? ORDER BY c.id"
        )
        with self.database.read() as db:
            records = db.execute(sql, (last_id,)).fetchall()
        return [Confirmation(r[0], r[1], r[2], r[3], None if r[4] is None else _row(r[5:])) for r in records]

    def erase_person(self, person: str, marker: str) -> int:
        quoted, replacement = json.dumps(person), json.dumps(marker)
        with self.database.write() as db:
            named = db.execute("UPDATE results SET name = ? WHERE name = ?", (marker, person)).rowcount
            db.execute(
                "UPDATE results SET candidates = replace(candidates, ?, ?) WHERE instr(candidates, ?) > 0",
                (quoted, replacement, quoted),
            )
            db.execute("UPDATE confirmations SET truth = ? WHERE truth = ?", (marker, person))
        return int(named)

    def close(self) -> None:
        self.database.close()


def _where(query: LogQuery) -> tuple[str, list[Any]]:
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


def _values(row: LogRow) -> tuple[Any, ...]:
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


def _row(record: Sequence[Any]) -> LogRow:
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
