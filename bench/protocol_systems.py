"""The systems compared by the protocol benchmark (facewire, the face_recognition peer) and their embeddings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import peer_face_recognition as peer
from bench.accuracy import Photo, split
from bench.protocol_embed import Embedded, SystemCache, embed_images, facewire_embed
from bench.protocol_views import views_for
from bench.protocols import Protocol
from facewire.config import ModelSettings
from facewire.faces import create_analyzer
from facewire.models.registry import embedder_spec

# The bench finds faces down to 16 px (the ~23 px faces of S=0.22); the edge's default min_face is 40.
BENCH_MIN_FACE = 16
BENCH_DET_THRESHOLD = 0.6
MOST_ENROLLED = 5  # the most photos a protocol enrols per person


@dataclass
class System:
    """One recogniser: how it embeds an image, how it scores probes against the gallery, its default."""

    name: str
    model: str
    variants: tuple[str, ...]
    embed: Callable[[np.ndarray], Embedded] | None
    similarity: Callable[[np.ndarray, np.ndarray], np.ndarray]
    default_threshold: float
    threshold_note: str
    detail: str = ""
    views: Callable[[list[tuple[str, Path]], Path], dict[str, Embedded]] | None = None


def cosine(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return probes @ gallery.T


def facewire_system(model: str, cache_dir: Path, threshold: float | None = None) -> System:
    """facewire's pipeline with ``model`` (registry id); its default threshold from the registry."""
    analyzer = create_analyzer(
        ModelSettings(embedder=model, cache_dir=cache_dir), det_threshold=BENCH_DET_THRESHOLD, min_face=BENCH_MIN_FACE
    )
    spec = embedder_spec(model)
    default = threshold if threshold is not None else spec.default_threshold
    return System(
        name=f"facewire {model}",
        model=model,
        variants=("plain", "flip"),
        embed=lambda image: facewire_embed(analyzer, image),
        similarity=cosine,
        default_threshold=float(default if default is not None else 0.45),
        threshold_note=f"cosine >= {default}",
        detail=f"{analyzer.preparation}+mf{BENCH_MIN_FACE}",
        views=lambda items, path: views_for(analyzer, items, path, model, f"{analyzer.preparation}+mf{BENCH_MIN_FACE}"),
    )


def peer_system() -> System:
    """face_recognition with its default tolerance (distance <= 0.6, i.e. score >= -0.6)."""
    return System(
        name="face_recognition (peer)",
        model=peer.PEER_ID,
        variants=("plain",),
        embed=peer.PeerEmbedder(),
        similarity=peer.similarity,
        default_threshold=-peer.TOLERANCE,
        threshold_note=f"distance <= {peer.TOLERANCE}",
    )


def enrolled_and_probes(
    photos: list[Photo], enroll: int, max_probes: int | None = None
) -> tuple[list[Photo], list[Photo]]:
    """The first ``enroll`` photos by name of each known person, and the probes: the rest and every unknown.
    With ``max_probes``, a known person's probes are their photos 6 to 5 + max_probes by name, whatever
    ``enroll`` is (so protocols with 1 and 5 photos judge the same probes, as in the issue's protocols)."""
    enrolled, probes = split(photos, enroll)
    if max_probes is None:
        return enrolled, probes
    rest = split(photos, MOST_ENROLLED)[1]
    by_person: dict[str, list[Photo]] = {}
    for photo in rest:
        by_person.setdefault(photo.person, []).append(photo)
    kept = [p for p in rest if not p.known or by_person[p.person].index(p) < max_probes]
    return enrolled, kept


def embed_for(
    system: System, photos: list[Photo], protocols: list[Protocol], cache_dir: Path, max_probes: int | None = None
) -> dict[str, dict[str, Embedded]]:
    """{degradation: {file SHA-256: Embedded}}: clean enrolment photos plus every protocol's probes, and
    ``views``: the enrolment photos' extra views (systems that have them)."""
    path = cache_dir / "bench" / f"protocols-{system.model}.sqlite"
    cache = SystemCache(path, system.model, system.variants)
    out: dict[str, dict[str, Embedded]] = {}
    try:
        needed: dict[str, dict[str, Path]] = {"clean": {}}
        needed_enrolled: set[str] = set()
        for protocol in protocols:
            enrolled, probes = enrolled_and_probes(photos, protocol.enroll_per_person, max_probes)
            needed["clean"].update({p.sha256: p.path for p in enrolled})
            needed_enrolled |= {p.sha256 for p in enrolled}
            needed.setdefault(protocol.degradation, {}).update({p.sha256: p.path for p in probes})
        by_degradation = {p.degradation: p for p in protocols} | {"clean": Protocol(1)}
        for degradation, items in needed.items():
            assert system.embed is not None
            out[degradation] = embed_images(
                sorted(items.items()), by_degradation[degradation], cache, system.embed, system.detail
            )
            if degradation == "clean" and system.views is not None:
                photo_paths = {p.sha256: p.path for p in photos if p.sha256 in needed_enrolled}
                out["views"] = system.views(sorted(photo_paths.items()), path)
    finally:
        cache.close()
    return out
