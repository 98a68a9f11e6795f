"""The gallery store's SQL, written once for SQLite and PostgreSQL.

The engines differ only in dialect: the placeholder (``?`` or ``%s``), the
collation that orders text byte-wise, how a transaction is opened and how the
pages of erased rows are purged. Statements use ``?``; :class:`Sql`
(:mod:`classifier_service.gallery.statements`) rewrites them to the engine's mark.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager

import numpy as np

from classifier_service.gallery.statements import (
    Sql,
    forget_rows,
    rename_rows,
    stack_blobs,
    tombstone_key,
    tombstone_secret,
    vector_blob,
)
from classifier_service.gallery.store import ForgetCounts, GalleryStore, NewEmbedding, RosterEntry, Rows, Unknown

CHUNK = 500  # ids per ``IN (...)`` list: below SQLite's bound-parameter limit


def select_rows(sql: Sql, table: str, model: str, with_vectors: bool = True) -> Rows:
    """Every row of ``table`` (embeddings or negatives) of ``model`` in id order."""
    column = "vector" if with_vectors else "NULL"
    found = sql.run(f"SELECT id, person, {column}, source FROM {table} WHERE model = ? ORDER BY id", model).fetchall()
    vectors = stack_blobs([r[2] for r in found]) if with_vectors else None
    return Rows([r[0] for r in found], [r[1] for r in found], vectors, [r[3] for r in found])


class SqlGalleryStore(GalleryStore):
    """:class:`GalleryStore` on a SQL engine; backends supply transactions, the byte order and the purge."""

    byte_order = ""  # collation clause that orders text byte-wise (SQLite's default order)
    replica = ""  # who keeps the unknown faces written here (a shared store: the replica's id)

    @abstractmethod
    def _write(self) -> AbstractContextManager[Sql]:
        """One transaction, committed when the block ends."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Sql]: ...

    def _observe(self) -> AbstractContextManager[Sql]:
        """The transaction for observations on the recognition path (unknowns, last seen)."""
        return self._write()

    @abstractmethod
    def _purge_erased(self) -> None:
        """After a forget: leave no copy of the erased rows in free pages, a log or dead tuples."""

    def _changed(self, sql: Sql, kind: str, ids: list[int]) -> None:
        """Inside a write: ``kind`` happened to embedding rows ``ids`` (a shared store logs it for its replicas)."""

    def add_embeddings(self, person: str, model: str, items: Sequence[NewEmbedding], now: float) -> list[bool]:
        with self._write() as sql:
            found = [
                sql.run(
                    "INSERT INTO embeddings (person, model, source, origin, vector, created)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                    person,
                    model,
                    item.source,
                    item.origin,
                    vector_blob(item.vector),
                    now,
                ).fetchone()
                for item in items
            ]
            ids = [int(row[0]) for row in found if row is not None]
            if ids:
                sql.run(
                    "INSERT INTO people VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET updated = excluded.updated",
                    person,
                    now,
                    now,
                )
                self._changed(sql, "add", ids)
            return [row is not None for row in found]

    def rows(self, model: str, with_vectors: bool = True) -> Rows:
        with self._read() as sql:
            return select_rows(sql, "embeddings", model, with_vectors)

    def delete_rows(self, ids: Sequence[int]) -> int:
        return self._delete_ids("embeddings", ids)

    def _delete_ids(self, table: str, ids: Sequence[int]) -> int:
        removed = 0
        with self._write() as sql:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                marks = ", ".join("?" * len(chunk))
                removed += sql.run(f"DELETE FROM {table} WHERE id IN ({marks})", *chunk).rowcount
            if table == "embeddings" and removed:
                self._changed(sql, "remove", list(ids))
        return removed

    def origins(self, model: str, prefix: str) -> dict[str, tuple[int, str, str]]:
        with self._read() as sql:
            found = sql.run(
                "SELECT origin, id, person, source FROM embeddings WHERE model = ? AND substr(origin, 1, ?) = ?",
                model,
                len(prefix),
                prefix,
            ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in found}

    def add_rejection(self, model: str, origin: str, source: str, reason: str) -> None:
        with self._write() as sql:
            sql.run(
                "INSERT INTO rejections VALUES (?, ?, ?, ?)"
                " ON CONFLICT (model, origin, source) DO UPDATE SET reason = excluded.reason",
                model,
                origin,
                source,
                reason,
            )

    def rejection(self, model: str, origin: str, source: str) -> str | None:
        with self._read() as sql:
            found = sql.run(
                "SELECT reason FROM rejections WHERE model = ? AND origin = ? AND source = ?", model, origin, source
            ).fetchone()
        return None if found is None else str(found[0])

    def add_negative(self, person: str, model: str, item: NewEmbedding, now: float) -> bool:
        with self._write() as sql:
            cursor = sql.run(
                "INSERT INTO negatives (person, model, source, origin, vector, created)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                person,
                model,
                item.source,
                item.origin,
                vector_blob(item.vector),
                now,
            )
            if cursor.rowcount == 1:
                self._changed(sql, "negatives", [])
            return bool(cursor.rowcount == 1)

    def negatives(self, model: str) -> Rows:
        with self._read() as sql:
            return select_rows(sql, "negatives", model)

    def forget(self, person: str) -> ForgetCounts:
        with self._write() as sql:
            ids = [int(r[0]) for r in sql.run("SELECT id FROM embeddings WHERE person = ?", person).fetchall()]
            counts = forget_rows(sql, person, time.time())
            if ids:
                self._changed(sql, "remove", ids)
            if counts.negatives:
                self._changed(sql, "negatives", [])
        self._purge_erased()
        return counts

    def tombstoned(self, people: Iterable[str]) -> set[str]:
        with self._write() as sql:
            secret = tombstone_secret(sql)
            keys = {str(r[0]) for r in sql.run("SELECT key FROM tombstones").fetchall()}
        return {person for person in people if tombstone_key(secret, person) in keys}

    def drop_tombstone(self, person: str) -> None:
        with self._write() as sql:
            sql.run("DELETE FROM tombstones WHERE key = ?", tombstone_key(tombstone_secret(sql), person))

    def rename(self, old: str, new: str) -> dict[str, int] | None:
        with self._write() as sql:
            ids = [int(r[0]) for r in sql.run("SELECT id FROM embeddings WHERE person = ?", old).fetchall()]
            counts = rename_rows(sql, old, new)
            if counts is not None and ids:
                self._changed(sql, "relabel", ids)
            if counts is not None and counts["negatives"]:
                self._changed(sql, "negatives", [])
            return counts

    def people(self, model: str) -> dict[str, int]:
        with self._read() as sql:
            found = sql.run(
                "SELECT person, count(*) FROM embeddings WHERE model = ?"
                f" GROUP BY person ORDER BY person{self.byte_order}",
                model,
            ).fetchall()
        return {r[0]: r[1] for r in found}

    def version(self, model: str) -> str:
        digest = hashlib.sha256(model.encode())
        order = f"person{self.byte_order}, source{self.byte_order}"
        with self._read() as sql:
            for table, tag in (("embeddings", "P"), ("negatives", "N")):
                found = sql.run(f"SELECT person, source FROM {table} WHERE model = ? ORDER BY {order}", model)
                for person, source in found.fetchall():
                    digest.update(f"{tag}\0{person}\0{source}\n".encode())
        return digest.hexdigest()[:12]

    def audit(self, op: str, actor: str, subject: str, details: Mapping[str, object], now: float) -> None:
        with self._write() as sql:
            sql.run(
                "INSERT INTO audit (ts, op, actor, subject, details) VALUES (?, ?, ?, ?, ?)",
                now,
                op,
                actor,
                subject,
                json.dumps(details, sort_keys=True),
            )

    def audit_events(self, limit: int = 100) -> list[dict[str, object]]:
        with self._read() as sql:
            found = sql.run("SELECT ts, op, actor, subject, details FROM audit ORDER BY id DESC LIMIT ?", limit)
            found = found.fetchall()
        return [{"ts": r[0], "op": r[1], "actor": r[2], "subject": r[3], **json.loads(r[4])} for r in found]

    def add_unknowns(self, model: str, items: Sequence[tuple[str, int, float, int, np.ndarray]]) -> None:
        with self._observe() as sql:
            sql.many(
                "INSERT INTO unknowns (model, node, seq, ts, cluster, vector, replica) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (node, seq) DO NOTHING",
                [
                    (model, node, seq, ts, cluster, vector_blob(vector), self.replica)
                    for node, seq, ts, cluster, vector in items
                ],
            )

    def unknowns(self, model: str, cluster: int | None = None, mine: bool = False) -> list[Unknown]:
        query = "SELECT id, node, seq, ts, cluster, vector FROM unknowns WHERE model = ?"
        args: tuple[object, ...] = (model,)
        if cluster is not None or mine:
            query, args = query + " AND replica = ?", (*args, self.replica)
        if cluster is not None:
            query, args = query + " AND cluster = ?", (*args, cluster)
        with self._read() as sql:
            found = sql.run(query + " ORDER BY id", *args).fetchall()
        return [Unknown(r[0], r[1], r[2], r[3], r[4], np.frombuffer(bytes(r[5]), dtype="<f4").copy()) for r in found]

    def delete_unknowns(self, ids: Sequence[int]) -> int:
        return self._delete_ids("unknowns", ids)

    def prune_unknowns(self, max_rows: int, before: float) -> int:
        with self._write() as sql:
            removed = int(sql.run("DELETE FROM unknowns WHERE ts < ?", before).rowcount)
            removed += sql.run(
                "DELETE FROM unknowns WHERE id NOT IN (SELECT id FROM unknowns ORDER BY ts DESC, id DESC LIMIT ?)",
                max_rows,
            ).rowcount
            return removed

    def update_last_seen(self, sightings: Sequence[tuple[str, str, float]]) -> None:
        with self._observe() as sql:
            sql.many(
                "INSERT INTO last_seen VALUES (?, ?, ?) ON CONFLICT (person) DO UPDATE"
                " SET node = excluded.node, ts = excluded.ts WHERE excluded.ts > last_seen.ts",
                sightings,
            )

    def roster(self, model: str) -> list[RosterEntry]:
        with self._read() as sql:
            found = sql.run(
                "SELECT e.person, count(*), min(e.created), l.node, l.ts FROM embeddings e"
                " LEFT JOIN last_seen l ON l.person = e.person WHERE e.model = ?"
                f" GROUP BY e.person, l.node, l.ts ORDER BY e.person{self.byte_order}",
                model,
            ).fetchall()
        return [
            RosterEntry(str(person), int(photos), float(enrolled), node, None if ts is None else float(ts))
            for person, photos, enrolled, node, ts in found
        ]

    def last_seen(self, person: str) -> tuple[str, float] | None:
        with self._read() as sql:
            found = sql.run("SELECT node, ts FROM last_seen WHERE person = ?", person).fetchone()
        return None if found is None else (str(found[0]), float(found[1]))
