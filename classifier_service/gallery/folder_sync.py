"""Bring the store in line with the dataset folder (GALLERY/<person>/**): the ``reload`` operation.

Folder photos are stored with origin ``folder:<person>/<relative path>`` and the
photo's SHA-256 as source. Photos already in the store (same origin and hash) are
not embedded again; photos that failed the checks are remembered by hash, so a
restart never re-embeds anything; rows whose file vanished or changed are removed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classifier_service.gallery.enrolment import PhotoCheck, base_of_view, check_photo, near_duplicate
from classifier_service.gallery.store import GalleryStore, NewEmbedding
from facewire.config import GallerySettings
from facewire.errors import FacewireError, ImageError
from facewire.faces import FaceAnalyzer
from facewire.gallery_folder import scan_folder
from facewire.images import load_image
from facewire.logs import kv
from facewire.models.registry import sha256_file
from facewire.schema.gallery import valid_person

log = logging.getLogger(__name__)
FOLDER = "folder:"


@dataclass
class SyncReport:
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)


def person_folder(root: Path, person: str) -> Path | None:
    """``root/<person>`` if it stays inside ``root`` (a person name is one folder level), else None."""
    folder = (root / person).resolve()
    return folder if folder.parent == root.resolve() else None


def folder_clash(root: Path, old: str, new: str) -> bool:
    """Renaming ``old`` to ``new`` would merge two dataset folders (both exist)."""
    source, target = person_folder(root, old), person_folder(root, new)
    return bool(source and target and source.is_dir() and target.exists())


def rename_person_folder(root: Path, old: str, new: str) -> bool:
    """Move ``root/<old>`` to ``root/<new>`` (so ``reload`` finds the photos under the new name); False if
    there is no such folder or the target exists (a replica sharing the folder already moved it)."""
    source, target = person_folder(root, old), person_folder(root, new)
    if source is None or target is None or not source.is_dir() or target.exists():
        return False
    source.rename(target)
    return True


def policy_key(model: str, policy: GallerySettings) -> str:
    """Model id plus the check settings: changing a threshold re-checks remembered rejections."""
    return f"{model}|{policy.min_face}|{policy.min_sharpness}|{policy.second_face_ratio}|{policy.duplicate_cosine}"


def sync_folder(
    root: Path,
    store: GalleryStore,
    model: str,
    analyzer: Callable[[], FaceAnalyzer],
    policy: GallerySettings,
    enrolled: np.ndarray | None,
    on_progress: Callable[[int, int], None] | None = None,
    forgotten: set[str] | None = None,
) -> SyncReport:
    """Add new folder photos (checked), drop vanished ones; ``enrolled`` feeds the near-duplicate check.
    The folders of ``forgotten`` people (erasure pending) are never enrolled."""
    report = SyncReport()
    pairs = [(p, path) for p, path in (scan_folder(root) if root.is_dir() else []) if p not in (forgotten or set())]
    stored = store.origins(model, FOLDER)
    seen: set[str] = set()
    known = enrolled if enrolled is not None else np.zeros((0, 0), dtype=np.float32)
    for done, (person, path) in enumerate(pairs, start=1):
        origin = f"{FOLDER}{person}/{path.relative_to(root / person).as_posix()}"
        seen.add(origin)
        digest = sha256_file(path)
        row = stored.get(origin)
        if row is not None and row[1] == person and row[2] == digest:
            report.unchanged += 1
        else:
            if row is not None:
                report.removed += store.delete_rows([r[0] for o, r in stored.items() if base_of_view(o) == origin])
            vector = _check_new(path, person, origin, digest, store, model, analyzer, policy, known, report)
            if vector is not None:
                known = vector[None, :] if not len(known) else np.vstack([known, vector])
        if on_progress:
            on_progress(done, len(pairs))
    gone = [row[0] for origin, row in stored.items() if base_of_view(origin) not in seen]
    report.removed += store.delete_rows(gone)
    return report


def _check_new(
    path: Path,
    person: str,
    origin: str,
    digest: str,
    store: GalleryStore,
    model: str,
    analyzer: Callable[[], FaceAnalyzer],
    policy: GallerySettings,
    known: np.ndarray,
    report: SyncReport,
) -> np.ndarray | None:
    key = policy_key(model, policy)
    remembered = store.rejection(key, origin, digest)
    if remembered is not None:
        report.rejected.append((origin, remembered))
        return None
    check = _check_file(path, person, analyzer, policy)
    report.embedded += check.accepted
    reason = check.reason
    if check.vector is not None:
        duplicate = near_duplicate(check.vector, known, policy.duplicate_cosine)
        if duplicate is not None:
            reason = f"near-duplicate of an enrolled face (cosine {duplicate:.3f})"
    if reason:
        store.add_rejection(key, origin, digest, reason)
        report.rejected.append((origin, reason))
        log.info(kv("enrolment-photo-rejected", origin=origin, reason=reason))
        return None
    assert check.vector is not None
    rows = [NewEmbedding(digest, origin, check.vector), *check.view_rows(digest, origin)]
    store.add_embeddings(person, model, rows, time.time())
    report.added += 1
    return check.vector


def _check_file(path: Path, person: str, analyzer: Callable[[], FaceAnalyzer], policy: GallerySettings) -> PhotoCheck:
    try:
        valid_person(person)
        return check_photo(analyzer(), load_image(path), policy)
    except ImageError as exc:
        return PhotoCheck(None, str(exc), {})
    except FacewireError as exc:
        return PhotoCheck(None, f"bad folder name: {exc}", {})
