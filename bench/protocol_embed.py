"""Embeddings of degraded probes for the protocol benchmark, cached by (SHA-256 of file + protocol, model).

facewire's pipeline stores three rows per image: the embedding as the edge computes it, the
flip-augmented one (mean of the crop's and its mirror's embeddings, re-normalised) and the face's
quality measures (size, sharpness, yaw, detector score), all of the largest face found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.protocols import Protocol, degrade, probe_key
from facewire.errors import ImageError
from facewire.faces import FaceAnalyzer
from facewire.gallery_folder import EmbeddingCache
from facewire.images import load_image
from facewire.models.embedder import l2_normalise
from facewire.progress import progress_bar

QUALITY_FIELDS = ("size", "sharpness", "yaw", "det_score")


@dataclass(frozen=True)
class Embedded:
    """One image through one system: vectors by variant (``plain``, ``flip``) and quality, or None (missed)."""

    vectors: dict[str, np.ndarray] | None
    quality: np.ndarray | None = None


def facewire_embed(analyzer: FaceAnalyzer, image: np.ndarray) -> Embedded:
    """The largest face of ``image`` through facewire's pipeline, plain and flip-augmented."""
    faces = analyzer.faces(image)
    if not faces:
        return Embedded(None)
    face = max(faces, key=lambda f: f.size)
    both = analyzer.embedder.embed([face.crop, np.ascontiguousarray(face.crop[:, ::-1])])
    quality = np.array(
        [face.quality["size"], face.quality["sharpness"], face.quality["yaw"], face.detection.score], dtype=np.float32
    )
    flip = l2_normalise((both[0] + both[1])[None])[0]
    return Embedded({"plain": both[0], "flip": flip}, quality)


class SystemCache:
    """Embedded images of one system (``model``) in an EmbeddingCache, one row per variant plus quality."""

    def __init__(self, path: Path, model: str, variants: tuple[str, ...]) -> None:
        self.cache = EmbeddingCache(path)
        self.model = model
        self.variants = variants

    def get(self, key: str) -> Embedded | None:
        rows = {variant: self.cache.get(key, f"{self.model}+{variant}") for variant in self.variants}
        if any(row is None for row in rows.values()):
            return None
        if any(row[0] is None for row in rows.values() if row is not None):
            return Embedded(None)
        quality = self.cache.get(key, f"{self.model}+quality")
        return Embedded(
            {v: row[0] for v, row in rows.items() if row is not None and row[0] is not None},
            None if quality is None else quality[0],
        )

    def put(self, key: str, embedded: Embedded, reason: str = "no face found") -> None:
        for variant in self.variants:
            vector = None if embedded.vectors is None else embedded.vectors[variant]
            self.cache.put(key, f"{self.model}+{variant}", vector, "" if vector is not None else reason)
        if embedded.quality is not None:
            self.cache.put(key, f"{self.model}+quality", embedded.quality)

    def close(self) -> None:
        self.cache.close()


def embed_images(
    items: list[tuple[str, Path]],
    protocol: Protocol,
    cache: SystemCache,
    embed: Callable[[np.ndarray], Embedded],
    detail: str = "",
) -> dict[str, Embedded]:
    """(file SHA-256, path) -> Embedded of the degraded image, from the cache when possible; keyed by SHA-256."""
    out: dict[str, Embedded] = {}
    with progress_bar(f"{cache.model} · {protocol.degradation}") as update:
        for done, (sha, path) in enumerate(items, start=1):
            key = probe_key(sha, protocol.degradation, detail)
            found = cache.get(key)
            if found is None:
                try:
                    found = embed(degrade(load_image(path), protocol, sha))
                except ImageError:
                    found = Embedded(None)
                cache.put(key, found)
            out[sha] = found
            update(done, len(items))
    return out
