"""The forwarder's durable outbox: results waiting for the HTTP endpoint, in a SQLite file (WAL, FULL sync).

A result is acknowledged to the broker only once it is committed here, and
deleted here only once the endpoint answered 2xx, so nothing is lost while the
endpoint or the service is down. Keyed by (node, seq): a redelivered result is
stored once, and the keys of the last ``remember`` delivered results are kept, so
a result the broker redelivers after it was forwarded is not forwarded again.
Results the endpoint refuses for good (a 4xx other than 408/429) move to
``rejected`` with the answer, counted and kept for the operator.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facewire.errors import ConfigError
from facewire.schema import FaceResult

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL,"
    " seq INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE (node, seq))",
    "CREATE TABLE IF NOT EXISTS delivered (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL,"
    " seq INTEGER NOT NULL, UNIQUE (node, seq))",
    "CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY, node TEXT, seq INTEGER, body BLOB,"
    " status INTEGER, answer TEXT, at REAL)",
    "CREATE TABLE IF NOT EXISTS progress (key TEXT PRIMARY KEY, value REAL NOT NULL)",
)
HANDLED_UNTIL = "handled_until"  # progress key: the newest classification time of the results handled


@dataclass(frozen=True)
class Pending:
    id: int
    node: str
    seq: int
    body: bytes


class ForwardQueue:
    """A persistent FIFO of results to forward; thread-safe."""

    def __init__(self, path: Path, remember: int = 100_000) -> None:
        self.path = path
        self.remember = remember
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            for statement in SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the forward queue {path}: {exc}") from exc

    def put(self, results: Sequence[FaceResult], handled_until: float | None = None) -> int:
        """Store ``results`` in one transaction (a (node, seq) already queued is skipped); returns how many were new.
        ``handled_until``: the newest classification time of the batch they were picked from, kept with them."""
        rows = [(r.node, r.seq, r.to_json()) for r in results]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            added = self._db.executemany(
                "INSERT OR IGNORE INTO outbox (node, seq, body) SELECT ?, ?, ? WHERE NOT EXISTS"
                " (SELECT 1 FROM delivered WHERE node = ?1 AND seq = ?2)",
                rows,
            ).rowcount
            if handled_until is not None:
                self._db.execute(
                    "INSERT INTO progress (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    (HANDLED_UNTIL, handled_until),
                )
            self._db.execute("COMMIT")
            return max(added, 0)

    def handled_until(self) -> float | None:
        """The newest classification time of every batch ``put`` so far (None: none yet)."""
        with self._lock:
            found = self._db.execute("SELECT value FROM progress WHERE key = ?", (HANDLED_UNTIL,)).fetchone()
        return None if found is None else float(found[0])

    def oldest(self, most: int) -> list[Pending]:
        with self._lock:
            found = self._db.execute("SELECT id, node, seq, body FROM outbox ORDER BY id LIMIT ?", (most,)).fetchall()
        return [Pending(int(i), str(n), int(s), bytes(b)) for i, n, s, b in found]

    def delivered(self, entry: Pending) -> None:
        """The endpoint has ``entry``: remember its key (the newest ``remember`` keys are kept), drop its body."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO delivered (node, seq) VALUES (?, ?)", (entry.node, entry.seq)
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (entry.id,))
            if cursor.lastrowid and cursor.lastrowid % 1000 == 0:
                self._db.execute("DELETE FROM delivered WHERE id <= ?", (cursor.lastrowid - self.remember,))
            self._db.execute("COMMIT")

    def reject(self, entry: Pending, status: int, answer: str, at: float) -> None:
        """Move ``entry`` to ``rejected`` with the endpoint's answer."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO rejected (node, seq, body, status, answer, at) VALUES (?, ?, ?, ?, ?, ?)",
                (entry.node, entry.seq, entry.body, status, answer[:500], at),
            )
            self._db.execute("DELETE FROM outbox WHERE id = ?", (entry.id,))
            self._db.execute("COMMIT")

    def erase(self, person: str, marker: str) -> int:
        """Replace ``person`` by ``marker`` in every queued or rejected result; returns the rows changed."""
        changed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("outbox", "rejected"):
                for row_id, body in self._db.execute(f"SELECT id, body FROM {table}").fetchall():
                    scrubbed = _scrub(bytes(body), person, marker)
                    if scrubbed is not None:
                        self._db.execute(f"UPDATE {table} SET body = ? WHERE id = ?", (scrubbed, row_id))
                        changed += 1
            self._db.execute("COMMIT")
        return changed

    @property
    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @property
    def rejected(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _scrub(body: bytes, person: str, marker: str) -> bytes | None:
    """``body`` (a result's JSON) with ``person`` replaced by ``marker``, or None if it does not name them."""
    found = json.loads(body)
    names = [found.get("name")] + [c.get("name") for c in found.get("candidates", []) if isinstance(c, dict)]
    if person not in names:
        return None
    if found.get("name") == person:
        found["name"] = marker
    for candidate in found.get("candidates", []):
        if isinstance(candidate, dict) and candidate.get("name") == person:
            candidate["name"] = marker
    return json.dumps(found, separators=(",", ":")).encode()
