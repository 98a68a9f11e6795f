"""Side effects of forgetting a person beyond the store: enrolment photos and the legacy embedding cache."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from classifier_service.gallery.store import GalleryStore
from facewire.erasure import erasure_marker
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


def erase_photos(store: GalleryStore, root: Path, person: str) -> list[str] | None:
    """Delete the person's enrolment photos, then their tombstone; returns the photos' hashes, or None when
    one could not be deleted (the tombstone stays: start-up tries again and never enrols them)."""
    try:
        hashes = delete_enrolment_photos(root, person)
    except OSError as exc:
        log.warning(kv("erasure-pending", subject=erasure_marker(person), error=exc))
        return None
    store.drop_tombstone(person)
    return hashes


def finish_erasures(store: GalleryStore, root: Path) -> set[str]:
    """Delete the photos of people forgotten while a deletion failed; returns those still pending."""
    folders = [d.name for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    return {person for person in store.tombstoned(folders) if erase_photos(store, root, person) is None}


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
