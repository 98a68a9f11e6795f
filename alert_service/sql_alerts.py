"""Alerts, incidents and rule sightings: the SQL, written once for SQLite and PostgreSQL.

Tables: ``facewire/storage/migrations/<engine>/alerts``. The incident key is
UNIQUE, so no incident is raised twice; a sighting is unique by (rule, node, seq).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from alert_service.store import AlertStore, Incident, Sighting, StoredAlert
from facewire.schema import Alert
from facewire.storage.sql import Database, Dialect

SIGHTING_COLUMNS = "rule, subject, node, seq, track, name, score, ts"


class SqlAlertStore(AlertStore):
    """AlertStore on ``database``, statements spelled in ``dialect``.

    ``transaction`` is one write transaction (plus :meth:`lock`); the methods
    called inside it use its connection, the others a short transaction each.
    """

    def __init__(self, database: Database, dialect: Dialect) -> None:
        self.database = database
        self.dialect = dialect
        self._local = threading.local()

    def lock(self, db: Any) -> None:
        """Serialise the read-decide-write steps of replicas, beyond what the write transaction does."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.database.write() as db:
            self.lock(db)
            self._local.db = db
            try:
                yield
            finally:
                self._local.db = None

    @contextmanager
    def _db(self) -> Iterator[Any]:
        """Inside a transaction: its connection; otherwise a short transaction of its own."""
        current = getattr(self._local, "db", None)
        if current is not None:
            yield current
            return
        with self.database.write() as db:
            yield db

    def _run(self, statement: str, params: tuple[Any, ...]) -> int:
        """Run ``statement`` on the current connection (see :meth:`_db`); returns the rows it changed."""
        with self._db() as db:
            return int(db.execute(self.dialect.sql(statement), params).rowcount)

    def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        """The rows of ``statement`` on the current connection."""
        with self._db() as db:
            return list(db.execute(self.dialect.sql(statement), params).fetchall())

    def add_sighting(self, sighting: Sighting) -> bool:
        added = self._run(
            f"INSERT INTO sightings ({SIGHTING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        return added == 1

    def sightings(self, rule: str, subject: str, since: float, until: float) -> list[Sighting]:
        rows = self._fetch(
            f"SELECT {SIGHTING_COLUMNS} FROM sightings WHERE rule = ? AND subject = ? AND ts >= ? AND ts <= ?"
            " ORDER BY ts, node COLLATE {binary}, seq",
            (rule, subject, since, until),
        )
        return [Sighting(*row) for row in rows]

    def latest_incident(self, rule: str, subject: str) -> Incident | None:
        rows = self._fetch(
            "SELECT key, first_ts, last_ts, count FROM alerts WHERE rule = ? AND subject = ?"
            " ORDER BY last_ts DESC LIMIT 1",
            (rule, subject),
        )
        return Incident(*rows[0]) if rows else None

    def open_incident(self, alert: Alert) -> bool:
        last_ts = max((e.ts for e in alert.evidence), default=alert.ts)
        added = self._run(
            "INSERT INTO alerts (key, rule, subject, node, first_ts, last_ts, count, raised_at, payload)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
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
        return added == 1

    def extend_incident(self, key: str, ts: float) -> None:
        self._run(
            "UPDATE alerts SET count = count + 1, last_ts = {greatest}(last_ts, ?), first_ts = {least}(first_ts, ?)"
            " WHERE key = ?",
            (ts, ts, key),
        )

    def mark_published(self, key: str) -> None:
        self._run("UPDATE alerts SET published = 1 WHERE key = ?", (key,))

    def unpublished(self, older_than: float) -> list[Alert]:
        with self.database.read() as db:
            rows = db.execute(
                self.dialect.sql("SELECT payload FROM alerts WHERE published = 0 AND raised_at < ? ORDER BY id"),
                (older_than,),
            ).fetchall()
        return [Alert.from_json(bytes(row[0])) for row in rows]

    def set_webhook_status(self, key: str, status: str) -> None:
        self._run("UPDATE alerts SET webhook = ? WHERE key = ?", (status[:200], key))

    def alerts(self, limit: int, unacked_only: bool = False, node: str | None = None) -> list[StoredAlert]:
        clauses = (["acked_at IS NULL"] if unacked_only else []) + (["node = ?"] if node else [])
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = (
            "SELECT payload, count, last_ts, published, acked_at, acked_by, webhook FROM alerts"
            f" {where} ORDER BY raised_at DESC LIMIT ?"
        )
        with self.database.read() as db:
            rows = db.execute(self.dialect.sql(sql), ([node] if node else []) + [limit]).fetchall()
        return [StoredAlert(Alert.from_json(bytes(r[0])), r[1], r[2], bool(r[3]), r[4], r[5], r[6] or "") for r in rows]

    def acknowledge(self, key: str, by: str, now: float) -> bool:
        changed = self._run(
            "UPDATE alerts SET acked_at = ?, acked_by = ? WHERE key = ? AND acked_at IS NULL", (now, by, key)
        )
        return changed == 1

    def prune_sightings(self, before: float) -> int:
        return self._run("DELETE FROM sightings WHERE ts < ?", (before,))

    def newest_sighting_ts(self) -> float | None:
        with self.database.read() as db:
            newest = db.execute("SELECT max(ts) FROM sightings").fetchone()[0]
        return None if newest is None else float(newest)

    def erase_person(self, person: str, marker: str) -> int:
        with self._db() as db:
            sql = self.dialect.sql
            db.execute(sql("UPDATE sightings SET name = ? WHERE name = ?"), (marker, person))
            db.execute(sql("UPDATE sightings SET subject = ? WHERE subject = ?"), (marker, person))
            rows = db.execute(
                sql(f"SELECT id, payload FROM alerts WHERE subject = ? OR {self.dialect.contains_sql('payload')}"),
                (person, person.encode()),
            ).fetchall()
            for row_id, payload in rows:
                alert = erase_from_alert(Alert.from_json(bytes(payload)), person, marker)
                db.execute(
                    sql("UPDATE alerts SET key = ?, subject = ?, payload = ? WHERE id = ?"),
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
