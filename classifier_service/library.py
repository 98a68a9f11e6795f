"""The face index of a scanned library: every face of every scanned file with its box, name and embedding.

Kept in a SQLite file beside the scan report (``ROOT/.facewire-faces.sqlite``)
and filled by ``facewire scan`` as files are scanned, so it grows with the
library. Clustering (:mod:`classifier_service.library_clusters`) and
similar-face search read it; the cluster of each face is stored here too, so
``--recluster`` folds new faces into the clusters found before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facewire.errors import ConfigError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS faces (id INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT NOT NULL,"
    " x REAL, y REAL, w REAL, h REAL, det REAL, name TEXT, score REAL, known INTEGER, vector BLOB NOT NULL,"
    " cluster INTEGER)",
    "CREATE INDEX IF NOT EXISTS faces_file ON faces (file)",
    "CREATE TABLE IF NOT EXISTS scanned (file TEXT PRIMARY KEY)",
)


@dataclass(frozen=True)
class LibraryFace:
    """One face of a library file, as scanned."""

    id: int
    file: str
    bbox: tuple[float, float, float, float]
    det: float
    name: str
    score: float
    known: bool
    cluster: int | None


class FaceIndex:
    """The library's faces and their unit-length embeddings (float16 on disk)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path)
            for statement in SCHEMA:
                self._db.execute(statement)
            self._db.commit()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the library face index {path}: {exc}") from exc

    def add(self, file: str, faces: Sequence[dict[str, object]], vectors: np.ndarray) -> None:
        """Store the faces of ``file`` (its report entries) with their embeddings, replacing an earlier scan of it."""
        rows = []
        for face, vector in zip(faces, vectors, strict=True):
            x, y, w, h = (float(v) for v in face["bbox"])  # type: ignore[attr-defined]
            unit = np.asarray(vector, dtype=np.float32)
            unit = unit / max(float(np.linalg.norm(unit)), 1e-12)
            rows.append(
                (file, x, y, w, h, face["det"], face["name"], face["score"], int(bool(face["known"])),
                 unit.astype("<f2").tobytes())
            )  # fmt: skip
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO scanned (file) VALUES (?)", (file,))
            self._db.execute("DELETE FROM faces WHERE file = ?", (file,))
            self._db.executemany(
                "INSERT INTO faces (file, x, y, w, h, det, name, score, known, vector) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    def files(self) -> set[str]:
        """Every file scanned into the index (with faces or without)."""
        return {str(f) for (f,) in self._db.execute("SELECT file FROM scanned")}

    def faces(self) -> list[LibraryFace]:
        found = self._db.execute("SELECT id, file, x, y, w, h, det, name, score, known, cluster FROM faces ORDER BY id")
        return [
            LibraryFace(int(i), f, (x, y, w, h), float(d), str(n), float(s), bool(k), None if c is None else int(c))
            for i, f, x, y, w, h, d, n, s, k, c in found
        ]

    def vectors(self) -> np.ndarray:
        """The embeddings in the order of :meth:`faces` (n x dim float32)."""
        blobs = [bytes(b) for (b,) in self._db.execute("SELECT vector FROM faces ORDER BY id")]
        if not blobs:
            return np.zeros((0, 0), dtype=np.float32)
        return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), -1).astype(np.float32)

    def set_clusters(self, assignment: dict[int, int]) -> None:
        """Record each face's cluster (``NOISE`` for none)."""
        with self._db:
            self._db.executemany("UPDATE faces SET cluster = ? WHERE id = ?", [(c, i) for i, c in assignment.items()])

    def close(self) -> None:
        self._db.close()
