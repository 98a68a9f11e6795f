"""The gallery store's statements, written once with ``?`` placeholders for SQLite and PostgreSQL.

:class:`Sql` rewrites them to the engine's mark; the multi-statement operations
(rename, forget with its tombstone) run inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from classifier_service.gallery.store import ForgetCounts, erased_rename_details, folder_prefix
from facewire.erasure import erasure_marker


def vector_blob(vector: np.ndarray) -> bytes:
    """How a vector is stored: little-endian float32 bytes."""
    return np.asarray(vector, dtype="<f4").tobytes()


def stack_blobs(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors back as one (N, dim) float32 array; (0, 0) when there are none."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(bytes(blob), dtype="<f4") for blob in blobs]).astype(np.float32)


class Sql:
    """One connection's statements, written with ``?`` and run with the engine's placeholder ``mark``."""

    def __init__(self, execute: Callable[..., Any], executemany: Callable[..., Any], mark: str) -> None:
        self._execute, self._executemany, self._mark = execute, executemany, mark

    def run(self, sql: str, *args: object) -> Any:
        """Run one statement; returns the cursor."""
        return self._execute(sql.replace("?", self._mark), args)

    def many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one statement once per row."""
        self._executemany(sql.replace("?", self._mark), list(rows))


def rename_rows(sql: Sql, old: str, new: str) -> dict[str, int] | None:
    """The statements of :meth:`GalleryStore.rename`, inside the caller's transaction."""
    taken = sql.run("SELECT count(*) FROM embeddings WHERE person = ?", new).fetchone()[0]
    if taken or sql.run("SELECT count(*) FROM negatives WHERE person = ?", new).fetchone()[0]:
        return None
    old_dir, new_dir = folder_prefix(old), folder_prefix(new)
    sql.run("DELETE FROM rejections WHERE substr(origin, 1, ?) = ?", len(new_dir), new_dir)  # stale: checked again
    sql.run("DELETE FROM people WHERE name = ?", new)
    sql.run("DELETE FROM last_seen WHERE person = ?", new)
    counts = {
        table: sql.run(
            f"UPDATE {table} SET person = ?, origin = CASE WHEN substr(origin, 1, ?) = ?"
            " THEN ? || substr(origin, ?) ELSE origin END WHERE person = ?",
            new,
            len(old_dir),
            old_dir,
            new_dir,
            len(old_dir) + 1,
            old,
        ).rowcount
        for table in ("embeddings", "negatives")
    }
    counts["rejections"] = sql.run(
        "UPDATE rejections SET origin = ? || substr(origin, ?) WHERE substr(origin, 1, ?) = ?",
        new_dir,
        len(old_dir) + 1,
        len(old_dir),
        old_dir,
    ).rowcount
    counts["people"] = sql.run("UPDATE people SET name = ? WHERE name = ?", new, old).rowcount
    counts["last_seen"] = sql.run("UPDATE last_seen SET person = ? WHERE person = ?", new, old).rowcount
    counts["audit"] = sql.run("UPDATE audit SET subject = ? WHERE subject = ?", new, old).rowcount
    return counts


def tombstone_key(secret: str, person: str) -> str:
    """The keyed hash a tombstone stores instead of the name (HMAC-SHA256 with the store's secret)."""
    return hmac.new(secret.encode(), person.encode(), hashlib.sha256).hexdigest()


def tombstone_secret(sql: Sql) -> str:
    """The store's random tombstone key, made on first use."""
    sql.run("INSERT INTO secrets VALUES ('tombstone', ?) ON CONFLICT (name) DO NOTHING", secrets.token_hex(32))
    return str(sql.run("SELECT value FROM secrets WHERE name = 'tombstone'").fetchone()[0])


def forget_rows(sql: Sql, person: str, now: float) -> ForgetCounts:
    """The statements of :meth:`GalleryStore.forget` (tombstone included), inside the caller's transaction."""
    sql.run(
        "INSERT INTO tombstones VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET created = excluded.created",
        tombstone_key(tombstone_secret(sql), person),
        erasure_marker(person),
        now,
    )
    found = sql.run("SELECT source, origin FROM embeddings WHERE person = ?", person).fetchall()
    removed = sql.run("DELETE FROM embeddings WHERE person = ?", person).rowcount
    negatives = sql.run("DELETE FROM negatives WHERE person = ?", person).rowcount
    folder = folder_prefix(person)
    sql.run("DELETE FROM rejections WHERE substr(origin, 1, ?) = ?", len(folder), folder)
    sql.run("DELETE FROM people WHERE name = ?", person)
    sql.run("DELETE FROM last_seen WHERE person = ?", person)
    renames = sql.run("SELECT id, details FROM audit WHERE op = 'rename' AND subject = ?", person).fetchall()
    for row_id, details in renames:
        sql.run("UPDATE audit SET details = ? WHERE id = ?", erased_rename_details(details), row_id)
    sql.run("UPDATE audit SET subject = ? WHERE subject = ?", erasure_marker(person), person)
    return ForgetCounts(removed, negatives, [r[0] for r in found], [r[1] for r in found])
