"""Alerts, incidents and rule sightings in SQLite; the incident key is UNIQUE, so no incident is raised twice."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from alert_service.sqlite_db import SqliteDatabase
from alert_service.store import AlertStore, Incident, Sighting, StoredAlert
from facewire.schema import Alert
from facewire.storage.migrate import migrate_sqlite

SIGHTING_COLUMNS = "rule, subject, node, seq, track, name, score, ts"


class SqliteAlertStore(AlertStore):
    """AlertStore on one SQLite file; ``transaction`` is BEGIN IMMEDIATE, so replicas decide one at a time."""

    def __init__(self, path: Path) -> None:
        self.database = SqliteDatabase(path)
        with self.database.lock:
            migrate_sqlite(self.database.db, "alerts")  # facewire/storage/migrations/sqlite/alerts
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.database.write() as db:
            self._local.db = db
            try:
                yield
            finally:
                self._local.db = None

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """Inside a transaction: its connection; otherwise a short transaction of its own."""
        current = getattr(self._local, "db", None)
        if current is not None:
            yield current
            return
        with self.database.write() as db:
            yield db

    def add_sighting(self, sighting: Sighting) -> bool:
        with self._db() as db:
            cursor = db.execute(
                f"INSERT OR IGNORE INTO sightings ({SIGHTING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sighting.rule,
                    sighting.subject,
                    sighting.node,
                    sighting.seq,
                    sighting.track,
                    sighting.name,
                    sighting.score,
                    sighting.ts,
                ),
            )
            return cursor.rowcount == 1

    def sightings(self, rule: str, subject: str, since: float, until: float) -> list[Sighting]:
        with self._db() as db:
            rows = db.execute(
                f"SELECT {SIGHTING_COLUMNS} FROM sightings WHERE rule = ? AND subject = ? AND ts >= ? AND ts <= ?"
                " ORDER BY ts, node, seq",
                (rule, subject, since, until),
            ).fetchall()
        return [Sighting(*row) for row in rows]

    def latest_incident(self, rule: str, subject: str) -> Incident | None:
        with self._db() as db:
            row = db.execute(
                "SELECT key, first_ts, last_ts, count FROM alerts WHERE rule = ? AND subject = ?"
                " ORDER BY last_ts DESC LIMIT 1",
                (rule, subject),
            ).fetchone()
        return None if row is None else Incident(*row)

    def open_incident(self, alert: Alert) -> bool:
        last_ts = max((e.ts for e in alert.evidence), default=alert.ts)
        with self._db() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO alerts (key, rule, subject, node, first_ts, last_ts, count, raised_at, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.id,
                    alert.rule,
                    alert.subject,
                    alert.node,
                    alert.ts,
                    last_ts,
                    len(alert.evidence),
                    alert.raised_at,
                    alert.to_json(),
                ),
            )
            return cursor.rowcount == 1

    def extend_incident(self, key: str, ts: float) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE alerts SET count = count + 1, last_ts = max(last_ts, ?), first_ts = min(first_ts, ?)"
                " WHERE key = ?",
                (ts, ts, key),
            )

    def mark_published(self, key: str) -> None:
        with self._db() as db:
            db.execute("UPDATE alerts SET published = 1 WHERE key = ?", (key,))

    def unpublished(self, older_than: float) -> list[Alert]:
        with self.database.read() as db:
            rows = db.execute(
                "SELECT payload FROM alerts WHERE published = 0 AND raised_at < ? ORDER BY id", (older_than,)
            ).fetchall()
        return [Alert.from_json(bytes(row[0])) for row in rows]

    def set_webhook_status(self, key: str, status: str) -> None:
        with self._db() as db:
            db.execute("UPDATE alerts SET webhook = ? WHERE key = ?", (status[:200], key))

    def alerts(self, limit: int, unacked_only: bool = False, node: str | None = None) -> list[StoredAlert]:
        clauses = (["acked_at IS NULL"] if unacked_only else []) + (["node = ?"] if node else [])
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = (
            "SELECT payload, count, last_ts, published, acked_at, acked_by, webhook FROM alerts"
            f" {where} ORDER BY raised_at DESC LIMIT ?"
        )
        with self.database.read() as db:
            rows = db.execute(sql, ([node] if node else []) + [limit]).fetchall()
        return [StoredAlert(Alert.from_json(bytes(r[0])), r[1], r[2], bool(r[3]), r[4], r[5], r[6] or "") for r in rows]

    def acknowledge(self, key: str, by: str, now: float) -> bool:
        with self._db() as db:
            cursor = db.execute(
                "UPDATE alerts SET acked_at = ?, acked_by = ? WHERE key = ? AND acked_at IS NULL", (now, by, key)
            )
            return cursor.rowcount == 1

    def prune_sightings(self, before: float) -> int:
        with self._db() as db:
            return db.execute("DELETE FROM sightings WHERE ts < ?", (before,)).rowcount

    def erase_person(self, person: str, marker: str) -> int:
        with self._db() as db:
            db.execute("UPDATE sightings SET name = ? WHERE name = ?", (marker, person))
            db.execute("UPDATE sightings SET subject = ? WHERE subject = ?", (marker, person))
            rows = db.execute(
                "SELECT id, payload FROM alerts WHERE subject = ? OR instr(payload, ?) > 0", (person, person)
            ).fetchall()
            for row_id, payload in rows:
                alert = erase_from_alert(Alert.from_json(bytes(payload)), person, marker)
                db.execute(
                    "UPDATE alerts SET key = ?, subject = ?, payload = ? WHERE id = ?",
                    (alert.id, alert.subject, alert.to_json(), row_id),
                )
        return len(rows)

    def close(self) -> None:
        self.database.close()


def erase_from_alert(alert: Alert, person: str, marker: str) -> Alert:
    """The alert with ``person`` replaced by ``marker`` in its id, subject, message and evidence."""

    def swap(text: str) -> str:
        return marker if text == person else text

    return replace(
        alert,
        id=":".join(swap(part) for part in alert.id.split(":")),
        subject=swap(alert.subject),
        message=alert.message.replace(person, marker),
        evidence=tuple(replace(e, name=swap(e.name)) for e in alert.evidence),
    )
