"""The gallery store in PostgreSQL: one schema per replica (``gallery_<replica>``) on a shared server.

Each classifier replica keeps its own store, as with SQLite (replicas converge
through the gallery commands on MQTT); PostgreSQL only moves the files off the
machine. Same tables and statements as SQLite (:mod:`classifier_service.gallery.sql_store`):
text is ordered byte-wise (``COLLATE "C"``, SQLite's order) so the gallery
version hash is the same on both engines.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from classifier_service.gallery.sql_store import SqlGalleryStore
from classifier_service.gallery.statements import Sql
from facewire.storage.postgres import PostgresDatabase

ERASED_TABLES = ("embeddings", "negatives", "rejections", "people", "last_seen", "audit")


def replica_schema(replica: str) -> str:
    """The PostgreSQL schema of one replica's store: ``gallery_`` + the replica id, made a safe identifier."""
    return ("gallery_" + re.sub(r"[^a-z0-9_]", "_", replica.lower()))[:63]


def _sql(conn: psycopg.Connection) -> Sql:
    def executemany(query: str, rows: list[tuple[object, ...]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(query.encode(), rows)

    return Sql(lambda query, args: conn.execute(query.encode(), args), executemany, "%s")


class PostgresGalleryStore(SqlGalleryStore):
    """The gallery store in one PostgreSQL schema; every call is its own transaction."""

    byte_order = ' COLLATE "C"'

    def __init__(self, url: str, replica: str) -> None:
        self.database = PostgresDatabase(url, "gallery", schema=replica_schema(replica))
        self.created = self.database.fresh

    @contextmanager
    def _write(self) -> Iterator[Sql]:
        with self.database.write() as conn:
            yield _sql(conn)

    @contextmanager
    def _read(self) -> Iterator[Sql]:
        with self.database.read() as conn:
            yield _sql(conn)

    def _purge_erased(self) -> None:
        """VACUUM FULL rewrites the touched tables, so no dead copy of the erased rows stays in them
        (WAL segments and backups are the operator's, docs/storage.md)."""
        with self.database.read() as conn:  # autocommit: VACUUM cannot run inside a transaction
            conn.execute(f"VACUUM FULL {', '.join(ERASED_TABLES)}".encode())

    def close(self) -> None:
        self.database.close()
