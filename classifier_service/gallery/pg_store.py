"""The gallery of record in PostgreSQL: one set of tables (schema ``gallery``) shared by every replica.

Same tables and statements as SQLite (:mod:`classifier_service.gallery.sql_store`), plus the change
log of :mod:`classifier_service.gallery.changes`: every write takes one advisory lock first, so
changes get their seq and commit in the same order, and each change notifies ``gallery_changes``
when it commits. A command runs in one transaction (:meth:`PostgresGalleryStore.claim`): the
replica that claims it first applies it, the others find it claimed and only follow the change.
Text is ordered byte-wise (``COLLATE "C"``), SQLite's order.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg

from classifier_service.gallery.changes import CHANNEL, Change, ChangeLog, Snapshot
from classifier_service.gallery.sql_store import SqlGalleryStore
from classifier_service.gallery.statements import Sql, stack_blobs
from classifier_service.gallery.store import Rows
from facewire.storage.postgres import PostgresDatabase
from facewire.storage.url import postgres_conninfo

SCHEMA = "gallery"
ADOPTED_COLUMNS = {  # what moves from a replica's own schema into the shared one (ids are new)
    "people": "name, created, updated",
    "embeddings": "person, model, source, origin, vector, created",
    "negatives": "person, model, source, origin, vector, created",
    "unknowns": "model, node, seq, ts, cluster, vector",
    "rejections": "model, origin, source, reason",
    "last_seen": "person, node, ts",
    "audit": "ts, op, actor, subject, details",
    "tombstones": "key, marker, created",
    "secrets": "name, value",  # the tombstone key: the adopted tombstones stay readable
}
ERASED_TABLES = ("embeddings", "negatives", "rejections", "people", "last_seen", "audit")
WRITE_LOCK = 0x67616C6C  # pg_advisory_xact_lock key of every gallery write ("gall")
KEEP_CHANGES = 10_000  # a replica further behind than this reloads the whole gallery
KEEP_COMMANDS_SECONDS = 7 * 86400  # a command redelivered later than this would be applied again
COPY_HEADER = 19  # a binary COPY's signature, flags and header extension length


def replica_schema(replica: str) -> str:
    """The schema a replica's own store had before the gallery was shared (``gallery_<replica>``)."""
    return ("gallery_" + re.sub(r"[^a-z0-9_]", "_", replica.lower()))[:63]


def _sql(conn: psycopg.Connection) -> Sql:
    def executemany(query: str, rows: list[tuple[object, ...]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(query.encode(), rows)

    return Sql(lambda query, args: conn.execute(query.encode(), args), executemany, "%s")


def _columns(conn: psycopg.Connection, schema: str, table: str) -> set[str]:
    found = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    ).fetchall()
    return {str(r[0]) for r in found}


def _copy_vectors(conn: psycopg.Connection, model: str) -> np.ndarray:
    """Every vector of ``model`` in id order as one (N, dim) float32 array: one binary COPY, its rows (field
    count, length, the vector's bytes) read in place by numpy, no Python object per row."""
    data = bytearray()
    query = "COPY (SELECT vector FROM embeddings WHERE model = %s ORDER BY id) TO STDOUT (FORMAT BINARY)"
    with conn.cursor() as cursor, cursor.copy(query.encode(), (model,)) as copy:
        for block in copy:
            data += block
    start = COPY_HEADER + int.from_bytes(data[COPY_HEADER - 4 : COPY_HEADER], "big")  # header extension
    body = memoryview(data)[start:-2]  # the trailer: a field count of -1
    if not len(body):
        return np.zeros((0, 0), dtype=np.float32)
    dim = int.from_bytes(body[2:6], "big") // 4
    row = np.dtype([("fields", ">i2"), ("size", ">i4"), ("vector", "<f4", (dim,))])
    if len(body) % row.itemsize:
        raise ValueError("vectors of different sizes in one model")
    found = np.frombuffer(body, dtype=row)
    if (found["fields"] != 1).any() or (found["size"] != 4 * dim).any():
        raise ValueError("vectors of different sizes in one model")
    return np.ascontiguousarray(found["vector"], dtype=np.float32)


class PostgresGalleryStore(SqlGalleryStore, ChangeLog):
    """The shared gallery; every call is its own transaction unless it runs inside :meth:`claim`."""

    byte_order = ' COLLATE "C"'

    def __init__(self, url: str, replica: str) -> None:
        self.url, self.replica = url, replica  # replica: also the owner of the unknown faces written
        self.database = PostgresDatabase(url, "gallery", schema=SCHEMA, name=f"facewire-gallery-{replica}")
        self._local = threading.local()  # .conn and .command of the claim this thread is in

    def adopt(self, replica: str) -> int:
        """Migration from one schema per replica: copy ``gallery_<replica>`` into the shared tables if they
        hold no embedding yet (the first replica to start does it; the others' schemas hold the same rows).
        Returns the embeddings adopted; the old schema is left for the operator to drop."""
        legacy = replica_schema(replica)
        with self.database.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{legacy}.embeddings",)).fetchone()
            taken = conn.execute("SELECT EXISTS (SELECT 1 FROM embeddings)").fetchone()
            if not found or not found[0] or not taken or taken[0]:
                return 0
            for table, columns in ADOPTED_COLUMNS.items():
                order = " ORDER BY id" if "id" in _columns(conn, legacy, table) else ""
                conn.execute(
                    f'INSERT INTO {table} ({columns}) SELECT {columns} FROM "{legacy}".{table}{order}'
                    " ON CONFLICT DO NOTHING".encode()
                )
            conn.execute("UPDATE unknowns SET replica = %s WHERE replica = ''", (self.replica,))  # its clusters
            ids = [int(r[0]) for r in conn.execute("SELECT id FROM embeddings ORDER BY id").fetchall()]
            if ids:
                self._changed(_sql(conn), "add", ids)
            if conn.execute("SELECT EXISTS (SELECT 1 FROM negatives)").fetchone() == (True,):
                self._changed(_sql(conn), "negatives", [])
        return len(ids)

    def _held(self) -> psycopg.Connection | None:
        return getattr(self._local, "conn", None)

    @contextmanager
    def _write(self) -> Iterator[Sql]:
        held = self._held()
        if held is not None:
            yield _sql(held)
            return
        with self.database.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield _sql(conn)

    @contextmanager
    def _read(self) -> Iterator[Sql]:
        held = self._held()
        if held is not None:  # inside a claim: read what this transaction wrote
            yield _sql(held)
            return
        with self.database.read() as conn:
            yield _sql(conn)

    @contextmanager
    def _observe(self) -> Iterator[Sql]:
        """Unknowns and last seen change no served row: no write lock, no change logged."""
        with self.database.write() as conn:
            yield _sql(conn)

    def _changed(self, sql: Sql, kind: str, ids: list[int]) -> None:
        command = getattr(self._local, "command", "")
        found = sql.run(
            "INSERT INTO changes (kind, ids, command, replica, ts) VALUES (?, ?, ?, ?, ?) RETURNING seq",
            kind,
            json.dumps(ids),
            command,
            self.replica,
            time.time(),
        ).fetchone()
        sql.run("DELETE FROM changes WHERE seq <= ?", int(found[0]) - KEEP_CHANGES)
        sql.run("SELECT pg_notify(?, ?)", CHANNEL, str(found[0]))  # delivered when the transaction commits

    @contextmanager
    def claim(self, key: str, command: str) -> Iterator[bool]:
        with self._joined(command) as conn:
            now = time.time()
            conn.execute("DELETE FROM commands WHERE ts < %s", (now - KEEP_COMMANDS_SECONDS,))
            claimed = conn.execute("INSERT INTO commands VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, now)).rowcount
            yield bool(claimed)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._held() is not None:
            yield
            return
        with self._joined(""):
            yield

    @contextmanager
    def _joined(self, command: str) -> Iterator[psycopg.Connection]:
        """One write transaction (the write lock taken) that this thread's store calls join; erased rows are
        purged once it commits."""
        with self.database.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            self._local.conn, self._local.command, self._local.purge = conn, command, False
            try:
                yield conn
            finally:
                purge = self._local.purge
                self._local.conn, self._local.command = None, ""
        if purge:
            self._purge_erased()

    def snapshot(self, model: str) -> Snapshot:
        with self.database.read() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
            found = conn.execute("SELECT id, person FROM embeddings WHERE model = %s ORDER BY id", (model,)).fetchall()
            vectors = _copy_vectors(conn, model)
        rows = Rows([r[0] for r in found], [r[1] for r in found], vectors)
        return Snapshot(int(row[0]) if row else 0, rows)

    def changes(self, after: int) -> list[Change] | None:
        with self.database.read() as conn:
            oldest = conn.execute("SELECT min(seq) FROM changes").fetchone()
            found = conn.execute(
                "SELECT seq, kind, ids, command, replica FROM changes WHERE seq > %s ORDER BY seq", (after,)
            ).fetchall()
        if oldest and oldest[0] is not None and after < int(oldest[0]) - 1:
            return None
        return [Change(int(seq), kind, json.loads(ids), command, replica) for seq, kind, ids, command, replica in found]

    def rows_by_id(self, model: str, ids: list[int]) -> Rows:
        with self.database.read() as conn:
            found = conn.execute(
                "SELECT id, person, vector, source FROM embeddings WHERE model = %s AND id = ANY(%s) ORDER BY id",
                (model, ids),
            ).fetchall()
        people, sources = [r[1] for r in found], [r[3] for r in found]
        return Rows([r[0] for r in found], people, stack_blobs([r[2] for r in found]), sources)

    def listen(self, on_change: Callable[[], None], stop: threading.Event, poll_seconds: float) -> None:
        conninfo = postgres_conninfo(self.url)
        with psycopg.connect(conninfo, autocommit=True, application_name=f"facewire-follow-{self.replica}") as conn:
            conn.execute(f"LISTEN {CHANNEL}".encode())
            on_change()  # what changed while not listening
            while not stop.is_set():
                for _notice in conn.notifies(timeout=poll_seconds, stop_after=1):
                    pass
                on_change()

    def _purge_erased(self) -> None:
        """VACUUM FULL rewrites the touched tables, so no dead copy of the erased rows stays in them
        (WAL segments and backups are the operator's, docs/storage.md). Inside a claim: after it commits."""
        if self._held() is not None:
            self._local.purge = True
            return
        with self.database.read() as conn:  # autocommit: VACUUM cannot run inside a transaction
            conn.execute(f"VACUUM FULL {', '.join(ERASED_TABLES)}".encode())

    def close(self) -> None:
        self.database.close()
