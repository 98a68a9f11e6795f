"""Side effects of forgetting a person beyond the store: enrolment photos and the legacy embedding cache."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from facewire.logs import kv
from facewire.models.registry import sha256_file

log = logging.getLogger(__name__)


def delete_enrolment_photos(root: Path, person: str) -> list[str]:
    """Delete every file in the person's dataset folder (and the folder); returns their SHA-256 hashes."""
    person_dir = (root / person).resolve()
    if not person_dir.is_relative_to(root.resolve()) or person_dir == root.resolve() or not person_dir.is_dir():
        return []
    hashes = []
    for leftover in sorted(person_dir.rglob("*"), reverse=True):
        if leftover.is_file() and not leftover.is_symlink():
            hashes.append(sha256_file(leftover))
            leftover.unlink()
        elif leftover.is_symlink():
            leftover.unlink()
        else:
            leftover.rmdir()
    person_dir.rmdir()
    return hashes


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
