"""The gallery store in one SQLite file (WAL), safe across threads of one process."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from classifier_service.gallery.sql_store import SqlGalleryStore
from classifier_service.gallery.statements import Sql
from facewire.storage.migrate import migrate_sqlite


class SqliteGalleryStore(SqlGalleryStore):
    """The gallery store in SQLite; every call holds one lock and commits before returning (inside
    :meth:`transaction`: the thread holds the lock and commits when the block ends)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._joined = False  # a transaction() is open (only the thread holding the lock can see True)
        self._purge_due = False
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not left in free pages
        self._strict()
        migrate_sqlite(self._db, "gallery")  # facewire/storage/migrations/sqlite/gallery

    def _sql(self) -> Sql:
        return Sql(self._db.execute, self._db.executemany, "?")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._joined:
                yield
                return
            self._joined, self._purge_due = True, False
            try:
                with self._db:  # commits, or rolls back if the block raises
                    yield
            finally:
                self._joined = False
            if self._purge_due:
                self._purge_erased()

    @contextmanager
    def _write(self) -> Iterator[Sql]:
        with self._lock:
            if self._joined:
                yield self._sql()
                return
            with self._db:
                yield self._sql()

    @contextmanager
    def _read(self) -> Iterator[Sql]:
        with self._lock:
            yield self._sql()

    @contextmanager
    def _observe(self) -> Iterator[Sql]:
        """Observations are written per batch on the recognition path: no fsync per commit
        (WAL + synchronous=NORMAL stays consistent; a power cut may lose the newest few)."""
        with self._lock:
            if self._joined:
                yield self._sql()
                return
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._db:
                    yield self._sql()
            finally:
                self._strict()

    def _strict(self) -> None:
        self._db.execute("PRAGMA synchronous=FULL")

    def _purge_erased(self) -> None:
        with self._lock:
            if self._joined:  # once the transaction commits
                self._purge_due = True
                return
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy of the erased pages stays in the WAL

    def close(self) -> None:
        with self._lock:
            self._db.close()
