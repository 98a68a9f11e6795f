"""Side effects of forgetting a person beyond the store: enrolment photos and the legacy embedding cache."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

from classifier_service.folder_sync import FOLDER
from facewire.logs import kv

log = logging.getLogger(__name__)


def erasure_marker(person: str) -> str:
    """What the audit trail keeps instead of the name: a marker with a short hash (to answer "was X erased?")."""
    return "erased:" + hashlib.sha256(person.encode()).hexdigest()[:16]


def delete_enrolment_photos(root: Path, person: str, origins: list[str]) -> int:
    """Delete the person's photos under the dataset folder (and their folder when it becomes empty)."""
    removed = 0
    person_dir = (root / person).resolve()
    if not person_dir.is_relative_to(root.resolve()) or person_dir == root.resolve():
        return 0
    for origin in origins:
        if origin.startswith(FOLDER):
            path = (root / origin[len(FOLDER) :]).resolve()
            if path.is_relative_to(person_dir) and path.is_file():
                path.unlink()
                removed += 1
    if person_dir.is_dir():
        for leftover in sorted(person_dir.rglob("*"), reverse=True):
            if leftover.is_file():
                leftover.unlink()
                removed += 1
            else:
                leftover.rmdir()
        person_dir.rmdir()
    return removed


def purge_embedding_cache(cache_file: Path, sources: list[str]) -> int:
    """Delete rows of the photo-hash embedding cache (classifier_service.gallery.EmbeddingCache) for ``sources``."""
    hashes = [s for s in sources if not s.startswith("vec:")]
    if not cache_file.is_file() or not hashes:
        return 0
    db = sqlite3.connect(cache_file)
    try:
        db.execute("PRAGMA secure_delete=ON")
        with db:
            removed = sum(db.execute("DELETE FROM embeddings WHERE sha256 = ?", (h,)).rowcount for h in hashes)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        log.warning(kv("cache-purge-failed", file=cache_file, error=exc))
        return 0
    finally:
        db.close()
    return removed
