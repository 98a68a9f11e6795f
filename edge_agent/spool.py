"""A bounded on-disk queue of outgoing messages (SQLite in WAL mode).

Every embedding is written here before it is published and marked acknowledged
on the broker's PUBACK, so neither a broker outage nor an agent crash loses a
face. Acknowledged entries stay ``keep_acked`` seconds more: mosquitto persists
by periodic snapshot, so a broker crash loses what it acknowledged since its
last snapshot, and the forwarder re-sends that recent past after a reconnect
(consumers are idempotent on (node, seq)). The queue is bounded: past
``max_messages`` acknowledged entries go first, then the oldest unacknowledged
ones are dropped, counted (the count survives restarts) and logged. An entry the
broker refuses (PUBACK reason code >= 0x80, e.g. not authorised by its ACL) is
not a delivery: it moves to the ``refused`` table of the same file with the
reason, where it is counted and kept for the operator.

fsync policies (SQLite ``synchronous``): ``always`` (FULL: an entry is on disk
before publish, survives power loss), ``normal`` (NORMAL in WAL mode: survives
a crash of the agent, the last transactions may be lost on power loss) and
``off`` (the OS decides; fastest).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from facewire.errors import ConfigError
from facewire.logs import kv

log = logging.getLogger(__name__)

SYNCHRONOUS = {"always": "FULL", "normal": "NORMAL", "off": "OFF"}


@dataclass(frozen=True)
class SpoolEntry:
    id: int
    topic: str
    payload: bytes


class Spool:
    """A persistent FIFO of (topic, payload) with oldest-first drop at ``max_messages``; thread-safe."""

    def __init__(self, path: Path, max_messages: int, fsync: str = "normal", keep_acked: float = 0.0) -> None:
        if fsync not in SYNCHRONOUS:
            raise ConfigError(f"spool fsync policy must be one of {sorted(SYNCHRONOUS)}, got {fsync!r}")
        self.path = path
        self.max_messages = max_messages
        self.keep_acked = keep_acked
        # While set (the connection is down), acknowledged entries from this time on are kept whatever
        # keep_acked says: the forwarder re-sends them after the reconnect, however long the outage.
        self.hold_acked_from: float | None = None
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={SYNCHRONOUS[fsync]}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool"
                " (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload BLOB, acked REAL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS refused"
                " (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB, code INTEGER, reason TEXT, at REAL)"
            )
            self._refused = int(self._db.execute("SELECT COUNT(*) FROM refused").fetchone()[0])
            self._depth = int(self._db.execute("SELECT COUNT(*) FROM spool WHERE acked IS NULL").fetchone()[0])
            row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open spool {path}: {exc}") from exc
        self._dropped = int(row[0]) if row else 0

    @property
    def depth(self) -> int:
        """Entries waiting for the broker's acknowledgement."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Entries dropped at the bound since the spool was created."""
        return self._dropped

    @property
    def refused(self) -> int:
        """Entries the broker refused, kept in the ``refused`` table."""
        return self._refused

    def put(self, topic: str, payload: bytes) -> int:
        """Append an entry (dropping the oldest ones beyond the bound); return its id."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute("INSERT INTO spool (topic, payload) VALUES (?, ?)", (topic, payload))
            self._depth += 1
            if cursor.lastrowid is not None and cursor.lastrowid % 100 == 0:
                cutoff = time.time() - self.keep_acked
                if self.hold_acked_from is not None:
                    cutoff = min(cutoff, self.hold_acked_from)
                self._db.execute("DELETE FROM spool WHERE acked < ?", (cutoff,))
            excess = self._depth - self.max_messages
            if excess > 0:
                self._db.execute("DELETE FROM spool WHERE acked IS NOT NULL")
                self._drop_oldest(excess)
            self._db.execute("COMMIT")
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def _drop_oldest(self, count: int) -> None:
        dropped = self._db.execute(
            "DELETE FROM spool WHERE id IN (SELECT id FROM spool WHERE acked IS NULL ORDER BY id LIMIT ?)", (count,)
        ).rowcount
        self._depth -= dropped
        self._dropped += dropped
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped', ?)", (self._dropped,))
        log.warning(
            kv("spool-full-dropped-oldest", dropped=dropped, total_dropped=self._dropped, bound=self.max_messages)
        )

    def acknowledged(self, entry_id: int) -> None:
        """The broker has the entry: it no longer counts, and is kept ``keep_acked`` s for a re-send (or deleted)."""
        with self._lock:
            if self.keep_acked > 0:
                sql = "UPDATE spool SET acked = ? WHERE id = ? AND acked IS NULL"
                cursor = self._db.execute(sql, (time.time(), entry_id))
            else:
                cursor = self._db.execute("DELETE FROM spool WHERE id = ? AND acked IS NULL", (entry_id,))
            self._depth -= cursor.rowcount

    def refuse(self, entry_id: int, code: int, reason: str) -> None:
        """The broker refused the entry: move it, with the reason, to the ``refused`` table."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.execute(
                "INSERT OR IGNORE INTO refused (id, topic, payload, code, reason, at)"
                " SELECT id, topic, payload, ?, ?, ? FROM spool WHERE id = ? AND acked IS NULL",
                (code, reason, time.time(), entry_id),
            ).rowcount
            self._db.execute("DELETE FROM spool WHERE id = ? AND acked IS NULL", (entry_id,))
            self._db.execute("COMMIT")
            self._depth -= moved
            self._refused += moved

    def after(self, entry_id: int, limit: int, acked_since: float | None = None) -> list[SpoolEntry]:
        """Up to ``limit`` entries past ``entry_id``: unacknowledged, or acknowledged since ``acked_since``."""
        since = float("inf") if acked_since is None else acked_since
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM spool"
                " WHERE id > ? AND (acked IS NULL OR acked >= ?) ORDER BY id LIMIT ?",
                (entry_id, since, limit),
            ).fetchall()
        return [SpoolEntry(int(i), str(t), bytes(p)) for i, t, p in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
