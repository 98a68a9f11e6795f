"""Alerts, incidents and rule sightings in PostgreSQL, shared by every alert-service replica.

``transaction`` takes one advisory lock (the counterpart of SQLite's BEGIN
IMMEDIATE), so replicas decide one sighting at a time; the UNIQUE incident key
makes a second ``open_incident`` of the same incident a no-op either way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from alert_service.sqlite_alerts import SIGHTING_COLUMNS, erase_from_alert
from alert_service.store import AlertStore, Incident, Sighting, StoredAlert
from facewire.schema import Alert
from facewire.storage.postgres import PostgresDatabase

DECIDE_LOCK = 0x66616C74  # pg_advisory_xact_lock key of the alert engine's read-decide-write step


class PostgresAlertStore(AlertStore):
    """AlertStore on a PostgreSQL database; safe for replicas on several machines."""

    def __init__(self, url: str) -> None:
        self.database = PostgresDatabase(url, "alerts")
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.database.write() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (DECIDE_LOCK,))
            self._local.db = db
            try:
                yield
            finally:
                self._local.db = None

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection]:
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
                f"INSERT INTO sightings ({SIGHTING_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
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
                f"SELECT {SIGHTING_COLUMNS} FROM sightings WHERE rule = %s AND subject = %s AND ts >= %s"
                ' AND ts <= %s ORDER BY ts, node COLLATE "C", seq',
                (rule, subject, since, until),
            ).fetchall()
        return [Sighting(*row) for row in rows]

    def latest_incident(self, rule: str, subject: str) -> Incident | None:
        with self._db() as db:
            row = db.execute(
                "SELECT key, first_ts, last_ts, count FROM alerts WHERE rule = %s AND subject = %s"
                " ORDER BY last_ts DESC LIMIT 1",
                (rule, subject),
            ).fetchone()
        return None if row is None else Incident(*row)

    def open_incident(self, alert: Alert) -> bool:
        last_ts = max((e.ts for e in alert.evidence), default=alert.ts)
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO alerts (key, rule, subject, node, first_ts, last_ts, count, raised_at, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
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
                "UPDATE alerts SET count = count + 1, last_ts = greatest(last_ts, %s),"
                " first_ts = least(first_ts, %s) WHERE key = %s",
                (ts, ts, key),
            )

    def mark_published(self, key: str) -> None:
        with self._db() as db:
            db.execute("UPDATE alerts SET published = 1 WHERE key = %s", (key,))

    def unpublished(self, older_than: float) -> list[Alert]:
        with self.database.read() as db:
            rows = db.execute(
                "SELECT payload FROM alerts WHERE published = 0 AND raised_at < %s ORDER BY id", (older_than,)
            ).fetchall()
        return [Alert.from_json(bytes(row[0])) for row in rows]

    def set_webhook_status(self, key: str, status: str) -> None:
        with self._db() as db:
            db.execute("UPDATE alerts SET webhook = %s WHERE key = %s", (status[:200], key))

    def alerts(self, limit: int, unacked_only: bool = False, node: str | None = None) -> list[StoredAlert]:
        clauses = (["acked_at IS NULL"] if unacked_only else []) + (["node = %s"] if node else [])
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = (
            "SELECT payload, count, last_ts, published, acked_at, acked_by, webhook FROM alerts"
            f" {where} ORDER BY raised_at DESC LIMIT %s"
        )
        with self.database.read() as db:
            rows = db.execute(sql.encode(), ([node] if node else []) + [limit]).fetchall()
        return [StoredAlert(Alert.from_json(bytes(r[0])), r[1], r[2], bool(r[3]), r[4], r[5], r[6] or "") for r in rows]

    def acknowledge(self, key: str, by: str, now: float) -> bool:
        with self._db() as db:
            cursor = db.execute(
                "UPDATE alerts SET acked_at = %s, acked_by = %s WHERE key = %s AND acked_at IS NULL", (now, by, key)
            )
            return cursor.rowcount == 1

    def prune_sightings(self, before: float) -> int:
        with self._db() as db:
            return db.execute("DELETE FROM sightings WHERE ts < %s", (before,)).rowcount

    def erase_person(self, person: str, marker: str) -> int:
        """As the SQLite store: every alert whose subject or payload names ``person`` is rewritten."""
        with self._db() as db:
            db.execute("UPDATE sightings SET name = %s WHERE name = %s", (marker, person))
            db.execute("UPDATE sightings SET subject = %s WHERE subject = %s", (marker, person))
            rows = db.execute(
                "SELECT id, payload FROM alerts WHERE subject = %s OR position(%s IN payload) > 0",
                (person, person.encode()),
            ).fetchall()
            for row_id, payload in rows:
                alert = erase_from_alert(Alert.from_json(bytes(payload)), person, marker)
                db.execute(
                    "UPDATE alerts SET key = %s, subject = %s, payload = %s WHERE id = %s",
                    (alert.id, alert.subject, alert.to_json(), row_id),
                )
        return len(rows)

    def close(self) -> None:
        self.database.close()
