"""The gallery store in PostgreSQL: one schema per replica (``gallery_<replica>``) on a shared server.

Each classifier replica keeps its own store, as with SQLite (replicas converge
through the gallery commands on MQTT); PostgreSQL only moves the files off the
machine. Same tables as :mod:`classifier_service.sqlite_gallery`, same results:
text is ordered byte-wise (``COLLATE "C"``, SQLite's order) so the gallery
version hash is the same on both engines.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence

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
from classifier_service.sqlite_gallery import _blob, _stack
from facewire.erasure import erasure_marker
from facewire.storage.postgres import PostgresDatabase

ERASED_TABLES = ("embeddings", "negatives", "rejections", "people", "last_seen", "audit")


def replica_schema(replica: str) -> str:
    """The PostgreSQL schema of one replica's store: ``gallery_`` + the replica id, made a safe identifier."""
    return ("gallery_" + re.sub(r"[^a-z0-9_]", "_", replica.lower()))[:63]


class PostgresGalleryStore(GalleryStore):
    """:class:`GalleryStore` in one PostgreSQL schema; every call is its own transaction."""

    def __init__(self, url: str, replica: str) -> None:
        self.database = PostgresDatabase(url, "gallery", schema=replica_schema(replica))
        self.created = self.database.fresh

    def add_embeddings(self, person: str, model: str, items: Sequence[NewEmbedding], now: float) -> list[bool]:
        with self.database.write() as db:
            added = []
            for item in items:
                cursor = db.execute(
                    "INSERT INTO embeddings (person, model, source, origin, vector, created)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (person, model, item.source, item.origin, _blob(item.vector), now),
                )
                added.append(cursor.rowcount == 1)
            if any(added):
                db.execute(
                    "INSERT INTO people VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO UPDATE SET updated = excluded.updated",
                    (person, now, now),
                )
            return added

    def rows(self, model: str, with_vectors: bool = True) -> Rows:
        column = "vector" if with_vectors else "NULL"
        with self.database.read() as db:
            found = db.execute(
                f"SELECT id, person, {column}, source FROM embeddings WHERE model = %s ORDER BY id".encode(), (model,)
            ).fetchall()
        vectors = _stack([bytes(r[2]) for r in found]) if with_vectors else None
        return Rows([r[0] for r in found], [r[1] for r in found], vectors, [r[3] for r in found])

    def delete_rows(self, ids: Sequence[int]) -> int:
        with self.database.write() as db:
            return db.execute("DELETE FROM embeddings WHERE id = ANY(%s)", (list(ids),)).rowcount

    def origins(self, model: str, prefix: str) -> dict[str, tuple[int, str, str]]:
        with self.database.read() as db:
            found = db.execute(
                "SELECT origin, id, person, source FROM embeddings WHERE model = %s AND substr(origin, 1, %s) = %s",
                (model, len(prefix), prefix),
            ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in found}

    def add_rejection(self, model: str, origin: str, source: str, reason: str) -> None:
        with self.database.write() as db:
            db.execute(
                "INSERT INTO rejections VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (model, origin, source) DO UPDATE SET reason = excluded.reason",
                (model, origin, source, reason),
            )

    def rejection(self, model: str, origin: str, source: str) -> str | None:
        with self.database.read() as db:
            found = db.execute(
                "SELECT reason FROM rejections WHERE model = %s AND origin = %s AND source = %s",
                (model, origin, source),
            ).fetchone()
        return None if found is None else str(found[0])

    def add_negative(self, person: str, model: str, item: NewEmbedding, now: float) -> bool:
        with self.database.write() as db:
            cursor = db.execute(
                "INSERT INTO negatives (person, model, source, origin, vector, created)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (person, model, item.source, item.origin, _blob(item.vector), now),
            )
            return cursor.rowcount == 1

    def negatives(self, model: str) -> Rows:
        with self.database.read() as db:
            found = db.execute(
                "SELECT id, person, vector, source FROM negatives WHERE model = %s ORDER BY id", (model,)
            ).fetchall()
        people, sources = [r[1] for r in found], [r[3] for r in found]
        return Rows([r[0] for r in found], people, _stack([bytes(r[2]) for r in found]), sources)

    def forget(self, person: str) -> ForgetCounts:
        """As SQLite; then VACUUM FULL rewrites the touched tables, so no dead copy of the erased rows stays in
        them (SQLite's secure_delete + checkpoint; WAL segments and backups are the operator's, docs/storage.md)."""
        folder = f"folder:{person}/"
        with self.database.write() as db:
            found = db.execute("SELECT source, origin FROM embeddings WHERE person = %s", (person,)).fetchall()
            removed = db.execute("DELETE FROM embeddings WHERE person = %s", (person,)).rowcount
            negatives = db.execute("DELETE FROM negatives WHERE person = %s", (person,)).rowcount
            db.execute("DELETE FROM rejections WHERE substr(origin, 1, %s) = %s", (len(folder), folder))
            db.execute("DELETE FROM people WHERE name = %s", (person,))
            db.execute("DELETE FROM last_seen WHERE person = %s", (person,))
            erase_rename_details(db.execute, person, "%s")
            db.execute("UPDATE audit SET subject = %s WHERE subject = %s", (erasure_marker(person), person))
        with self.database.read() as db:  # autocommit: VACUUM cannot run inside a transaction
            db.execute(f"VACUUM FULL {', '.join(ERASED_TABLES)}".encode())
        return ForgetCounts(removed, negatives, [r[0] for r in found], [r[1] for r in found])

    def rename(self, old: str, new: str) -> dict[str, int] | None:
        with self.database.write() as db:
            return rename_rows(db.execute, old, new, "%s")

    def people(self, model: str) -> dict[str, int]:
        with self.database.read() as db:
            found = db.execute(
                'SELECT person, count(*) FROM embeddings WHERE model = %s GROUP BY person ORDER BY person COLLATE "C"',
                (model,),
            ).fetchall()
        return {r[0]: r[1] for r in found}

    def version(self, model: str) -> str:
        digest = hashlib.sha256(model.encode())
        with self.database.read() as db:
            for table, tag in (("embeddings", "P"), ("negatives", "N")):
                order = 'person COLLATE "C", source COLLATE "C"'  # SQLite's byte order
                found = db.execute(
                    f"SELECT person, source FROM {table} WHERE model = %s ORDER BY {order}".encode(), (model,)
                )
                for person, source in found:
                    digest.update(f"{tag}\0{person}\0{source}\n".encode())
        return digest.hexdigest()[:12]

    def audit(self, op: str, actor: str, subject: str, details: Mapping[str, object], now: float) -> None:
        with self.database.write() as db:
            db.execute(
                "INSERT INTO audit (ts, op, actor, subject, details) VALUES (%s, %s, %s, %s, %s)",
                (now, op, actor, subject, json.dumps(details, sort_keys=True)),
            )

    def audit_events(self, limit: int = 100) -> list[dict[str, object]]:
        with self.database.read() as db:
            found = db.execute(
                "SELECT ts, op, actor, subject, details FROM audit ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
        return [{"ts": r[0], "op": r[1], "actor": r[2], "subject": r[3], **json.loads(r[4])} for r in found]

    def add_unknowns(self, model: str, items: Sequence[tuple[str, int, float, int, np.ndarray]]) -> None:
        with self.database.write() as db, db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO unknowns (model, node, seq, ts, cluster, vector) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (node, seq) DO NOTHING",
                [(model, node, seq, ts, cluster, _blob(vector)) for node, seq, ts, cluster, vector in items],
            )

    def unknowns(self, model: str, cluster: int | None = None) -> list[Unknown]:
        query = "SELECT id, node, seq, ts, cluster, vector FROM unknowns WHERE model = %s"
        args: tuple[object, ...] = (model,)
        if cluster is not None:
            query, args = query + " AND cluster = %s", (model, cluster)
        with self.database.read() as db:
            found = db.execute((query + " ORDER BY id").encode(), args).fetchall()
        return [Unknown(r[0], r[1], r[2], r[3], r[4], np.frombuffer(bytes(r[5]), dtype="<f4").copy()) for r in found]

    def delete_unknowns(self, ids: Sequence[int]) -> int:
        with self.database.write() as db:
            return db.execute("DELETE FROM unknowns WHERE id = ANY(%s)", (list(ids),)).rowcount

    def prune_unknowns(self, max_rows: int, before: float) -> int:
        with self.database.write() as db:
            removed = db.execute("DELETE FROM unknowns WHERE ts < %s", (before,)).rowcount
            removed += db.execute(
                "DELETE FROM unknowns WHERE id NOT IN (SELECT id FROM unknowns ORDER BY ts DESC, id DESC LIMIT %s)",
                (max_rows,),
            ).rowcount
            return removed

    def update_last_seen(self, sightings: Sequence[tuple[str, str, float]]) -> None:
        with self.database.write() as db, db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO last_seen VALUES (%s, %s, %s) ON CONFLICT (person) DO UPDATE"
                " SET node = excluded.node, ts = excluded.ts WHERE excluded.ts > last_seen.ts",
                list(sightings),
            )

    def last_seen(self, person: str) -> tuple[str, float] | None:
        with self.database.read() as db:
            found = db.execute("SELECT node, ts FROM last_seen WHERE person = %s", (person,)).fetchone()
        return None if found is None else (str(found[0]), float(found[1]))

    def close(self) -> None:
        self.database.close()
