"""The gallery: enrolment photos laid out as DIR/<person>/[<subdir>/]*.jpg, embedded once and cached.

Embeddings are cached in SQLite keyed by (file SHA-256, model id), so a restart
or a re-scan only embeds new or changed photos.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facewire.config import Settings
from facewire.errors import ConfigError, ImageError
from facewire.faces import FaceAnalyzer, create_analyzer
from facewire.images import is_image_file, load_image
from facewire.logs import kv
from facewire.models.registry import sha256_file
from facewire.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleryPhoto:
    person: str
    path: Path
    sha256: str


@dataclass
class Gallery:
    """Enrolled embeddings (one row per accepted photo) and the label of each row."""

    model_id: str
    dim: int
    labels: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    photos: list[GalleryPhoto] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def people(self) -> list[str]:
        return sorted(set(self.labels))

    @property
    def version(self) -> str:
        """Content hash of the model and the enrolled photos: equal galleries have equal versions."""
        digest = hashlib.sha256(self.model_id.encode())
        for photo in sorted(self.photos, key=lambda p: (p.person, p.sha256)):
            digest.update(f"{photo.person}\0{photo.sha256}\n".encode())
        return digest.hexdigest()[:12]


def scan_folder(root: Path) -> list[tuple[str, Path]]:
    """(person, photo) pairs of ``root/<person>/**``, sorted; hidden folders are ignored."""
    if not root.is_dir():
        raise FileNotFoundError(f"gallery folder not found: {root}")
    pairs = []
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(person_dir.rglob("*")):
            if is_image_file(path):
                pairs.append((person_dir.name, path))
    return pairs


class EmbeddingCache:
    """SQLite cache of photo embeddings (or the reason a photo has none) by SHA-256 and ``cache_key``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (sha256 TEXT, model TEXT, vector BLOB, reason TEXT,"
            " PRIMARY KEY (sha256, model))"
        )

    def get(self, sha256: str, model: str) -> tuple[np.ndarray | None, str] | None:
        row = self._db.execute(
            "SELECT vector, reason FROM embeddings WHERE sha256 = ? AND model = ?", (sha256, model)
        ).fetchone()
        if row is None:
            return None
        vector = None if row[0] is None else np.frombuffer(row[0], dtype=np.float32).copy()
        return vector, row[1] or ""

    def put(self, sha256: str, model: str, vector: np.ndarray | None, reason: str = "") -> None:
        blob = None if vector is None else np.asarray(vector, dtype=np.float32).tobytes()
        self._db.execute("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", (sha256, model, blob, reason))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def embed_photo(analyzer: FaceAnalyzer, path: Path) -> tuple[np.ndarray | None, str]:
    """The embedding of the largest face in the photo, or None and the reason there is none."""
    try:
        image = load_image(path)
    except ImageError as exc:
        return None, str(exc)
    faces = analyzer.faces(image)
    if not faces:
        return None, "no face found"
    largest = max(faces, key=lambda face: face.size)
    analyzer.embed([largest])
    assert largest.embedding is not None
    return largest.embedding, ""


def cache_key(analyzer: FaceAnalyzer) -> str:
    """What a cached photo embedding depends on besides the photo: the model, detector, mask and warp."""
    return f"{analyzer.embedder.model_id}+{analyzer.preparation}"


def cached_embedding(
    cache: EmbeddingCache, analyzer: FaceAnalyzer, path: Path, sha256: str
) -> tuple[np.ndarray | None, str]:
    """``embed_photo`` of ``path`` (whose SHA-256 is ``sha256``), from ``cache`` when it has it, else stored there."""
    key = cache_key(analyzer)
    cached = cache.get(sha256, key)
    if cached is None:
        cached = embed_photo(analyzer, path)
        cache.put(sha256, key, *cached)
    return cached


def build_gallery(
    root: Path, analyzer: FaceAnalyzer, cache: EmbeddingCache, on_progress: Callable[[int, int], None] | None = None
) -> Gallery:
    """Embed (or take from the cache) every photo under ``root``."""
    gallery = Gallery(model_id=analyzer.embedder.model_id, dim=analyzer.embedder.dim)
    vectors = []
    pairs = scan_folder(root)
    for done, (person, path) in enumerate(pairs, start=1):
        digest = sha256_file(path)
        vector, reason = cached_embedding(cache, analyzer, path, digest)
        if vector is None:
            gallery.rejected.append((path, reason))
            log.warning(kv("enrolment-photo-rejected", path=path, reason=reason))
        else:
            gallery.labels.append(person)
            gallery.photos.append(GalleryPhoto(person, path, digest))
            vectors.append(vector)
        if on_progress:
            on_progress(done, len(pairs))
    gallery.embeddings = np.stack(vectors) if vectors else np.zeros((0, gallery.dim), dtype=np.float32)
    return gallery


def load_gallery(settings: Settings) -> Gallery:
    """Embed (or read from the cache) every enrolment photo of the configured gallery folder."""
    gallery_dir = settings.classifier.gallery
    if not gallery_dir.is_dir():
        raise ConfigError(f"gallery folder not found: {gallery_dir} (expected GALLERY/<person>/*.jpg)")
    analyzer = create_analyzer(settings.model, det_threshold=0.6, min_face=20)
    cache = EmbeddingCache(settings.model.cache_dir / "gallery" / "embeddings.sqlite")
    try:
        with progress_bar(f"enrolling {gallery_dir}") as update:
            return build_gallery(gallery_dir, analyzer, cache, update)
    finally:
        cache.close()
