"""Embeddings of the enrolment photos' extra views (issue 23): the face shrunk to camera sizes, plain and flipped.

Each clean enrolment photo goes through the classifier's own enrolment code
(``classifier_service.gallery.enrolment.view_crops``): the largest face, then the photo shrunk so that face
is ``size`` pixels and aligned from the scaled landmarks. Cached like the probes (``bench.protocol_embed``),
one row per view and variant: ``s24`` and ``s24-flip`` (mean with the mirrored crop), and so on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.protocol_embed import Embedded, SystemCache
from bench.protocols import probe_key
from classifier_service.gallery.enrolment import view_crops
from facewire.errors import ImageError
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.models.embedder import l2_normalise
from facewire.progress import progress_bar

# Face sides a camera produces, 1.5x apart from the smallest the edge can use (~24 px) up to where SFace
# loses little (~54 px): chosen from geometry, not from the benchmark's probe sizes.
VIEW_SIZES = (24, 36, 54)


def variants(sizes: tuple[int, ...] = VIEW_SIZES) -> tuple[str, ...]:
    return tuple(v for s in sizes for v in (f"s{s}", f"s{s}-flip"))


def embed_views(analyzer: FaceAnalyzer, image: np.ndarray, sizes: tuple[int, ...]) -> Embedded:
    """The largest face of ``image`` at every size of ``sizes``, plain and flip-augmented."""
    faces = analyzer.faces(image)
    if not faces:
        return Embedded(None)
    face = max(faces, key=lambda f: f.size)
    crops = view_crops(analyzer, image, face, sizes)
    if len(crops) != len(sizes):
        return Embedded(None)  # a photo whose face is smaller than a view: no view row (never in lfw-dev)
    both = analyzer.embedder.embed(crops + [np.ascontiguousarray(c[:, ::-1]) for c in crops])
    vectors: dict[str, np.ndarray] = {}
    for i, size in enumerate(sizes):
        vectors[f"s{size}"] = both[i]
        vectors[f"s{size}-flip"] = l2_normalise((both[i] + both[i + len(sizes)])[None])[0]
    return Embedded(vectors)


def views_for(
    analyzer: FaceAnalyzer, items: list[tuple[str, Path]], cache_path: Path, model: str, detail: str
) -> dict[str, Embedded]:
    """(file SHA-256, path) -> the photo's views, from the cache when possible."""
    cache = SystemCache(cache_path, model, variants())
    out: dict[str, Embedded] = {}
    try:
        with progress_bar(f"{model} · enrolment views") as update:
            for done, (sha, path) in enumerate(items, start=1):
                key = probe_key(sha, "views-" + "-".join(map(str, VIEW_SIZES)), detail)
                found = cache.get(key)
                if found is None:
                    try:
                        found = embed_views(analyzer, load_image(path), VIEW_SIZES)
                    except ImageError:
                        found = Embedded(None)
                    cache.put(key, found)
                out[sha] = found
                update(done, len(items))
    finally:
        cache.close()
    return out
