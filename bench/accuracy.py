"""Accuracy on a DIR/known/<person>/*.jpg + DIR/unknown/<person>/*.jpg dataset (layout of lfw-dev).

Each known person's photos, sorted by name, are split: the first half (at least one) is enrolled,
the rest are probes. Every unknown photo is a probe that must be rejected. Photos go through the
real detector + aligner + embedder (``create_analyzer``) and the real ``Matcher``; embeddings are
cached per (file SHA-256, model and preparation) in ``EmbeddingCache``, so re-runs only redo the matching.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import metrics
from classifier_service.matcher import Matcher
from classifier_service.quality import Cohort, cohort_for
from facewire.config import ClassifierSettings, ModelSettings
from facewire.errors import ConfigError
from facewire.faces import FaceAnalyzer, create_analyzer
from facewire.gallery_folder import EmbeddingCache, cached_embedding, scan_folder
from facewire.models.registry import EMBEDDERS, default_threshold, sha256_file
from facewire.progress import progress_bar

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
DEFAULT_DATASET = Path(os.environ.get("FACEWIRE_SHARED_DATA", SHARED_DATA)) / "lfw-dev"
FARS = (1e-2, 1e-3)
VERIFICATION_PAIRS = 3000  # per kind (same / different), as in LFW's View 2


@dataclass(frozen=True)
class Photo:
    person: str
    path: Path
    sha256: str
    known: bool


def scan_dataset(root: Path, limit_people: int | None = None) -> list[Photo]:
    """Every photo of ``root/known`` and ``root/unknown``, sorted; ConfigError when the layout is absent."""
    if not (root / "known").is_dir() or not (root / "unknown").is_dir():
        raise ConfigError(
            f"dataset not found: {root} (expected DIR/known/<person>/*.jpg and DIR/unknown/<person>/*.jpg)"
        )
    photos = []
    for kind in ("known", "unknown"):
        people: list[str] = []
        for person, path in scan_folder(root / kind):
            if person not in people:
                people.append(person)
            if limit_people is None or len(people) <= limit_people:
                photos.append(Photo(person, path, sha256_file(path), kind == "known"))
    return photos


def dataset_hash(root: Path, photos: list[Photo]) -> str:
    """SHA-256 over the sorted (relative path, file SHA-256) of every photo."""
    digest = hashlib.sha256()
    for photo in sorted(photos, key=lambda p: str(p.path)):
        digest.update(f"{photo.path.relative_to(root)}\0{photo.sha256}\n".encode())
    return digest.hexdigest()


def split(photos: list[Photo], enroll: int | None = None) -> tuple[list[Photo], list[Photo]]:
    """(enrolled, probes): the first ``enroll`` photos by name of each known person are enrolled (None: the
    first half, at least one); the probes are the rest and every unknown photo."""
    by_person: dict[str, list[Photo]] = {}
    for photo in photos:
        if photo.known:
            by_person.setdefault(photo.person, []).append(photo)
    enrolled: list[Photo] = []
    probes: list[Photo] = []
    for person_photos in by_person.values():
        ordered = sorted(person_photos, key=lambda p: p.path.name)
        cut = max(1, len(ordered) // 2) if enroll is None else enroll
        enrolled += ordered[:cut]
        probes += ordered[cut:]
    probes += [photo for photo in photos if not photo.known]
    return enrolled, probes


def embed_all(photos: list[Photo], analyzer: FaceAnalyzer, cache: EmbeddingCache) -> dict[str, np.ndarray | None]:
    """Embedding (or None: no face found) of every photo by SHA-256, from the cache when possible."""
    vectors: dict[str, np.ndarray | None] = {}
    with progress_bar(f"embedding with {analyzer.embedder.model_id}") as update:
        for done, photo in enumerate(photos, start=1):
            vectors[photo.sha256] = cached_embedding(cache, analyzer, photo.path, photo.sha256)[0]
            update(done, len(photos))
    return vectors


def verification_pairs(photos: list[Photo], per_kind: int) -> list[tuple[Photo, Photo, bool]]:
    """Deterministic same-person and different-person pairs (seeded), interleaved for 10 folds."""
    rng = np.random.default_rng(20261123)
    by_person: dict[str, list[Photo]] = {}
    for photo in sorted(photos, key=lambda p: str(p.path)):
        by_person.setdefault(photo.person, []).append(photo)
    multi = [group for group in by_person.values() if len(group) >= 2]
    positives: set[tuple[int, int, int]] = set()
    for _ in range(per_kind * 20):
        if len(positives) >= per_kind or not multi:
            break
        group = int(rng.integers(len(multi)))
        a, b = sorted(rng.choice(len(multi[group]), 2, replace=False).tolist())
        positives.add((group, a, b))
    people = list(by_person.values())
    negatives: set[tuple[int, int, int, int]] = set()
    for _ in range(per_kind * 20):
        if len(negatives) >= len(positives) or len(people) < 2:
            break
        p, q = sorted(rng.choice(len(people), 2, replace=False).tolist())
        negatives.add((p, int(rng.integers(len(people[p]))), q, int(rng.integers(len(people[q])))))
    same = [(multi[g][a], multi[g][b], True) for g, a, b in sorted(positives)]
    different = [(people[p][i], people[q][j], False) for p, i, q, j in sorted(negatives)]
    return [pair for both in zip(same, different, strict=False) for pair in both]


def identification(
    enrolled: list[Photo],
    probes: list[Photo],
    vectors: dict[str, np.ndarray | None],
    threshold: float,
    cohort: Cohort | None = None,
) -> dict[str, Any]:
    """Rank-1 and TAR at FAR from the best centroid scores; rejection and known-correct as the real Matcher
    decides at ``threshold`` with ``cohort`` (the shipped decision: the score needed rises for a face that
    resembles every enrolled person)."""
    gallery = [(p.person, vector) for p in enrolled if (vector := vectors[p.sha256]) is not None]
    matcher = Matcher(np.stack([v for _, v in gallery]), [name for name, _ in gallery], threshold, cohort=cohort)
    decided: dict[str, str] = {}  # sha256 -> the name given, or "" for unknown
    known = [p for p in probes if p.known]
    unknown = [p for p in probes if not p.known]

    def best(photos: list[Photo]) -> tuple[list[str], np.ndarray]:
        found = [(p, vector) for p in photos if (vector := vectors[p.sha256]) is not None]
        matches = matcher.match(np.stack([v for _, v in found])) if found else []
        decided.update({p.sha256: m.name if m.known else "" for (p, _), m in zip(found, matches, strict=True)})
        top = {
            p.sha256: (m.candidates[0].name, m.score) for (p, _), m in zip(found, matches, strict=True) if m.candidates
        }
        names = [top.get(p.sha256, ("", np.nan))[0] for p in photos]
        return names, np.array([top.get(p.sha256, ("", np.nan))[1] for p in photos], dtype=np.float64)

    known_names, known_scores = best(known)
    correct = [name == p.person for name, p in zip(known_names, known, strict=True)]
    _, unknown_scores = best(unknown)
    result: dict[str, Any] = {
        "enrolled_photos": len(gallery),
        "enrolment_rejected": len(enrolled) - len(gallery),
        "people": len(set(p.person for p in enrolled)),
        "known_probes": len(known),
        "known_missed": int(np.isnan(known_scores).sum()),
        "unknown_probes": len(unknown),
        "unknown_missed": int(np.isnan(unknown_scores).sum()),
        "rank1": metrics.rank1_accuracy(correct),
        "threshold": threshold,
        "unknown_rejected_at_threshold": sum(not decided.get(p.sha256) for p in unknown) / max(len(unknown), 1),
        "known_correct_at_threshold": sum(decided.get(p.sha256) == p.person for p in known) / max(len(known), 1),
    }
    for far in FARS:
        at = metrics.threshold_at_far(unknown_scores[~np.isnan(unknown_scores)], far)
        result[f"tar_at_far_{far:g}"] = metrics.true_accept_rate(correct, known_scores, at)
        result[f"threshold_at_far_{far:g}"] = at
    return result


def verification(photos: list[Photo], vectors: dict[str, np.ndarray | None]) -> dict[str, Any]:
    """LFW-style 1:1 verification on deterministic pairs of the same photos."""
    pairs = verification_pairs(photos, VERIFICATION_PAIRS)
    scores, same = [], []
    for a, b, is_same in pairs:
        va, vb = vectors[a.sha256], vectors[b.sha256]
        scores.append(float(np.dot(va, vb)) if va is not None and vb is not None else np.nan)
        same.append(is_same)
    result = metrics.verification_accuracy(scores, same)
    result["pairs_with_missed_face"] = int(np.isnan(scores).sum())
    return result


def evaluate_model(model: str, photos: list[Photo], cache_dir: Path, threshold: float) -> dict[str, Any]:
    """All accuracy numbers of one embedder on the dataset."""
    analyzer = create_analyzer(ModelSettings(embedder=model, cache_dir=cache_dir), det_threshold=0.6, min_face=20)
    cache = EmbeddingCache(cache_dir / "bench" / "embeddings.sqlite")
    try:
        vectors = embed_all(photos, analyzer, cache)
    finally:
        cache.close()
    enrolled, probes = split(photos)
    return {
        "model": analyzer.embedder.model_id,
        "identification": identification(enrolled, probes, vectors, threshold, cohort_for(analyzer.embedder.model_id)),
        "verification": verification(photos, vectors),
    }


def models_with_weights() -> list[str]:
    """Registered embedders whose weights ship in an installed package (CLIP needs a user's export)."""
    return [model_id for model_id, spec in EMBEDDERS.items() if spec.file is not None]


def run(dataset: Path, models: list[str], limit_people: int | None = None, cache_dir: Path | None = None) -> dict:
    """Evaluate every model on ``dataset``; the dict written to bench/results/accuracy.json."""
    photos = scan_dataset(dataset, limit_people)
    configured = ClassifierSettings().threshold  # None: each model's calibrated registry default

    def threshold(model: str) -> float:
        return configured if configured is not None else default_threshold(model)

    cache = cache_dir or ModelSettings().cache_dir
    return {
        "dataset": {
            "path": str(dataset),
            "files": len(photos),
            "known_people": len({p.person for p in photos if p.known}),
            "unknown_people": len({p.person for p in photos if not p.known}),
            "content_sha256": dataset_hash(dataset, photos),
            "limit_people": limit_people,
        },
        "protocol": "enrol first half (>=1) of each known person's photos by name; probes: the rest + all unknowns",
        "default_threshold": threshold(models[0]) if models else None,
        "models": [evaluate_model(model, photos, cache, threshold(model)) for model in models],
    }
