"""The gallery store in one SQLite file (WAL), safe across threads of one process."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from classifier_service.gallery_store import (
    ForgetCounts,
    GalleryStore,
    NewEmbedding,
    Rows,
    Unknown,
    erase_rename_details,
    rename_rows,
)
from facewire.erasure import erasure_marker
from facewire.storage.migrate import migrate_sqlite


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _stack(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(blob, dtype="<f4") for blob in blobs]).astype(np.float32)


class SqliteGalleryStore(GalleryStore):
    """:class:`GalleryStore` in SQLite; every call holds one lock and commits before returning."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not left in free pages
        self._strict()
        migrate_sqlite(self._db, "gallery")  # facewire/storage/migrations/sqlite/gallery

    def add_embeddings(self, person: str, model: str, items: Sequence[NewEmbedding], now: float) -> list[bool]:
        with self._lock, self._db:
            added = []
            for item in items:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO embeddings (person, model, source, origin, vector, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (person, model, item.source, item.origin, _blob(item.vector), now),
                )
                added.append(cursor.rowcount == 1)
            if any(added):
                self._touch(person, now)
            return added

    def _touch(self, person: str, now: float) -> None:
        self._db.execute(
            "INSERT INTO people VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET updated = excluded.updated",
            (person, now, now),
        )

    def rows(self, model: str, with_vectors: bool = True) -> Rows:
        column = "vector" if with_vectors else "NULL"
        with self._lock:
            found = self._db.execute(
                f"SELECT id, person, {column}, source FROM embeddings WHERE model = ? ORDER BY id", (model,)
            ).fetchall()
        vectors = _stack([r[2] for r in found]) if with_vectors else None
        return Rows([r[0] for r in found], [r[1] for r in found], vectors, [r[3] for r in found])

    def delete_rows(self, ids: Sequence[int]) -> int:
        with self._lock, self._db:
            return sum(self._db.execute("DELETE FROM embeddings WHERE id = ?", (i,)).rowcount for i in ids)

    def origins(self, model: str, prefix: str) -> dict[str, tuple[int, str, str]]:
        with self._lock:
            found = self._db.execute(
                "SELECT origin, id, person, source FROM embeddings WHERE model = ? AND substr(origin, 1, ?) = ?",
                (model, len(prefix), prefix),
            ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in found}

    def add_rejection(self, model: str, origin: str, source: str, reason: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO rejections VALUES (?, ?, ?, ?)", (model, origin, source, reason))

    def rejection(self, model: str, origin: str, source: str) -> str | None:
        with self._lock:
            found = self._db.execute(
                "SELECT reason FROM rejections WHERE model = ? AND origin = ? AND source = ?", (model, origin, source)
            ).fetchone()
        return None if found is None else str(found[0])

    def add_negative(self, person: str, model: str, item: NewEmbedding, now: float) -> bool:
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO negatives (person, model, source, origin, vector, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (person, model, item.source, item.origin, _blob(item.vector), now),
            )
            return cursor.rowcount == 1

    def negatives(self, model: str) -> Rows:
        with self._lock:
            found = self._db.execute(
                "SELECT id, person, vector, source FROM negatives WHERE model = ? ORDER BY id", (model,)
            ).fetchall()
        people, sources = [r[1] for r in found], [r[3] for r in found]
        return Rows([r[0] for r in found], people, _stack([r[2] for r in found]), sources)

    def forget(self, person: str) -> ForgetCounts:
        with self._lock, self._db:
            found = self._db.execute("SELECT source, origin FROM embeddings WHERE person = ?", (person,)).fetchall()
            removed = self._db.execute("DELETE FROM embeddings WHERE person = ?", (person,)).rowcount
            negatives = self._db.execute("DELETE FROM negatives WHERE person = ?", (person,)).rowcount
            folder = f"folder:{person}/"
            self._db.execute("DELETE FROM rejections WHERE substr(origin, 1, ?) = ?", (len(folder), folder))
            self._db.execute("DELETE FROM people WHERE name = ?", (person,))
            self._db.execute("DELETE FROM last_seen WHERE person = ?", (person,))
            erase_rename_details(self._db.execute, person)
            self._db.execute("UPDATE audit SET subject = ? WHERE subject = ?", (erasure_marker(person), person))
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy of the erased pages stays in the WAL
        return ForgetCounts(removed, negatives, [r[0] for r in found], [r[1] for r in found])

    def rename(self, old: str, new: str) -> dict[str, int] | None:
        with self._lock, self._db:
            return rename_rows(self._db.execute, old, new)

    def people(self, model: str) -> dict[str, int]:
        with self._lock:
            found = self._db.execute(
                "SELECT person, count(*) FROM embeddings WHERE model = ? GROUP BY person ORDER BY person", (model,)
            ).fetchall()
        return {r[0]: r[1] for r in found}

    def version(self, model: str) -> str:
        digest = hashlib.sha256(model.encode())
        with self._lock:
            for table, tag in (("embeddings", "P"), ("negatives", "N")):
                for person, source in self._db.execute(
                    f"SELECT person, source FROM {table} WHERE model = ? ORDER BY person, source", (model,)
                ):
                    digest.update(f"{tag}\0{person}\0{source}\n".encode())
        return digest.hexdigest()[:12]

    def audit(self, op: str, actor: str, subject: str, details: Mapping[str, object], now: float) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO audit (ts, op, actor, subject, details) VALUES (?, ?, ?, ?, ?)",
                (now, op, actor, subject, json.dumps(details, sort_keys=True)),
            )

    def audit_events(self, limit: int = 100) -> list[dict[str, object]]:
        with self._lock:
            found = self._db.execute(
                "SELECT ts, op, actor, subject, details FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"ts": r[0], "op": r[1], "actor": r[2], "subject": r[3], **json.loads(r[4])} for r in found]

    def _relaxed(self) -> None:
        """Observations (unknowns, last seen) are written per batch on the recognition path: no fsync per
        commit (WAL + synchronous=NORMAL stays consistent; a power cut may lose the newest few)."""
        self._db.execute("PRAGMA synchronous=NORMAL")

    def _strict(self) -> None:
        self._db.execute("PRAGMA synchronous=FULL")

    def add_unknowns(self, model: str, items: Sequence[tuple[str, int, float, int, np.ndarray]]) -> None:
        with self._lock:
            self._relaxed()
            try:
                self._insert_unknowns(model, items)
            finally:
                self._strict()

    def _insert_unknowns(self, model: str, items: Sequence[tuple[str, int, float, int, np.ndarray]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO unknowns (model, node, seq, ts, cluster, vector) VALUES (?, ?, ?, ?, ?, ?)",
                [(model, node, seq, ts, cluster, _blob(vector)) for node, seq, ts, cluster, vector in items],
            )

    def unknowns(self, model: str, cluster: int | None = None) -> list[Unknown]:
        query = "SELECT id, node, seq, ts, cluster, vector FROM unknowns WHERE model = ?"
        args: tuple[object, ...] = (model,)
        if cluster is not None:
            query, args = query + " AND cluster = ?", (model, cluster)
        with self._lock:
            found = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [Unknown(r[0], r[1], r[2], r[3], r[4], np.frombuffer(r[5], dtype="<f4").copy()) for r in found]

    def delete_unknowns(self, ids: Sequence[int]) -> int:
        with self._lock, self._db:
            return sum(self._db.execute("DELETE FROM unknowns WHERE id = ?", (i,)).rowcount for i in ids)

    def prune_unknowns(self, max_rows: int, before: float) -> int:
        with self._lock, self._db:
            removed = self._db.execute("DELETE FROM unknowns WHERE ts < ?", (before,)).rowcount
            removed += self._db.execute(
                "DELETE FROM unknowns WHERE id NOT IN (SELECT id FROM unknowns ORDER BY ts DESC, id DESC LIMIT ?)",
                (max_rows,),
            ).rowcount
            return removed

    def update_last_seen(self, sightings: Sequence[tuple[str, str, float]]) -> None:
        with self._lock:
            self._relaxed()
            try:
                self._upsert_last_seen(sightings)
            finally:
                self._strict()

    def _upsert_last_seen(self, sightings: Sequence[tuple[str, str, float]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT INTO last_seen VALUES (?, ?, ?) ON CONFLICT (person) DO UPDATE"
                " SET node = excluded.node, ts = excluded.ts WHERE excluded.ts > last_seen.ts",
                sightings,
            )

    def last_seen(self, person: str) -> tuple[str, float] | None:
        with self._lock:
            found = self._db.execute("SELECT node, ts FROM last_seen WHERE person = ?", (person,)).fetchone()
        return None if found is None else (str(found[0]), float(found[1]))

    def close(self) -> None:
        with self._lock:
            self._db.close()
