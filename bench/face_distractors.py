"""Realistic galleries: real SFace embeddings of lfw-dev among generated distractors shaped like them.

The distractors come from a two-covariance (PLDA-style) Gaussian fitted to the real embeddings:

- within-identity spread ``S_w``: covariance of each known person's photos around that person's mean
  (158 people, ~14 photos each);
- between-identity spread ``S_b``: covariance of one photo per stranger (1,018 people, one photo each)
  minus ``S_w``, its negative eigenvalues clipped to 0;
- a distractor identity is a centre ``c ~ N(mean, S_b)``; each of its photos is ``c + N(0, S_w)``,
  L2-normalised, like every SFace embedding the classifier sees.

``fit`` takes only the enrolled half of the known people and the first half of the strangers, so the
``check`` compares held-out real strangers against real strangers and against distractors.
Generated rows are cached under ``<cache>/bench/distractors/`` (never in git).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import accuracy
from facewire.config import ModelSettings
from facewire.gallery_folder import EmbeddingCache

MODEL = "sface-2021dec"
PHOTOS_PER_DISTRACTOR = 3  # photos per generated identity (rows of one person share a centre)


@dataclass(frozen=True)
class RealFaces:
    """lfw-dev as the accuracy bench splits it: enrolled photos of known people, their probes, strangers."""

    enrolled: np.ndarray
    enrolled_people: list[str]
    probes: np.ndarray
    probe_people: list[str]
    strangers: np.ndarray


@dataclass(frozen=True)
class FaceModel:
    """The fitted two-covariance Gaussian (see the module docstring)."""

    mean: np.ndarray
    between: np.ndarray  # square root (d, d) of S_b
    within: np.ndarray  # square root (d, d) of S_w

    def sample(self, count: int, seed: int, per_identity: int = PHOTOS_PER_DISTRACTOR) -> np.ndarray:
        """``count`` unit rows, ``per_identity`` consecutive rows per generated identity."""
        rng = np.random.default_rng(seed)
        identities = -(-count // per_identity)
        centres = self.mean + rng.standard_normal((identities, len(self.mean)), dtype=np.float32) @ self.between
        rows = np.repeat(centres, per_identity, axis=0)[:count]
        rows += rng.standard_normal(rows.shape, dtype=np.float32) @ self.within
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float32)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def load_real(dataset: Path = accuracy.DEFAULT_DATASET, cache_dir: Path | None = None) -> RealFaces:
    """The embeddings of lfw-dev from the accuracy bench's cache (embedding the photos it lacks)."""
    photos = accuracy.scan_dataset(dataset)
    enrolled, probes = accuracy.split(photos)
    cache = EmbeddingCache((cache_dir or ModelSettings().cache_dir) / "bench" / "embeddings.sqlite")
    try:
        from facewire.faces import create_analyzer

        analyzer = create_analyzer(ModelSettings(embedder=MODEL), det_threshold=0.6, min_face=20)
        vectors = accuracy.embed_all(photos, analyzer, cache)
    finally:
        cache.close()
    enrolled = [p for p in enrolled if vectors[p.sha256] is not None]
    known = [p for p in probes if p.known and vectors[p.sha256] is not None]
    strangers = [p for p in probes if not p.known and vectors[p.sha256] is not None]

    def stack(chosen: list[accuracy.Photo]) -> np.ndarray:
        return unit(np.stack([vectors[p.sha256] for p in chosen]))  # type: ignore[misc]

    return RealFaces(
        stack(enrolled), [p.person for p in enrolled], stack(known), [p.person for p in known], stack(strangers)
    )


def _root(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))).T.astype(np.float32)


def fit(real: RealFaces) -> FaceModel:
    """Fit the model on the enrolled photos (within spread) and the first half of the strangers (between)."""
    people = np.array(real.enrolled_people)
    residuals = []
    for person in np.unique(people):
        rows = real.enrolled[people == person]
        if len(rows) >= 2:
            residuals.append((rows - rows.mean(axis=0)) * np.sqrt(len(rows) / (len(rows) - 1)))
    within = np.cov(np.vstack(residuals), rowvar=False)
    fitting = real.strangers[: len(real.strangers) // 2]
    total = np.cov(fitting, rowvar=False)
    return FaceModel(fitting.mean(axis=0).astype(np.float32), _root(total - within), _root(within))


def distractors(model: FaceModel, count: int, cache_dir: Path | None = None, seed: int = 21) -> np.ndarray:
    """``count`` generated rows (memory-mapped from the cache, generated on first use in chunks)."""
    key = hashlib.sha256(model.mean.tobytes() + model.between.tobytes() + model.within.tobytes()).hexdigest()[:12]
    folder = (cache_dir or ModelSettings().cache_dir) / "bench" / "distractors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}-s{seed}-{count}.npy"
    if not path.exists():
        tmp = path.with_suffix(".tmp.npy")
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(count, len(model.mean)))
        chunk = 100_002  # a multiple of PHOTOS_PER_DISTRACTOR, so identities never straddle chunks
        for start in range(0, count, chunk):
            end = min(count, start + chunk)
            rows[start:end] = model.sample(end - start, seed + start)
        rows.flush()
        del rows
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


def _summary(scores: np.ndarray) -> dict[str, float]:
    quantiles = np.quantile(scores, [0.5, 0.9, 0.99, 0.999])
    return {
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "p50": float(quantiles[0]),
        "p90": float(quantiles[1]),
        "p99": float(quantiles[2]),
        "p999": float(quantiles[3]),
        "max": float(scores.max()),
    }


def check(real: RealFaces, model: FaceModel, seed: int = 5) -> dict[str, Any]:
    """Held-out strangers against the fitting strangers vs against as many distractor identities:
    all pair scores and nearest-neighbour (max) scores, with the two-sample KS statistic of each."""
    from scipy.stats import ks_2samp

    half = len(real.strangers) // 2
    fitting, held = real.strangers[:half], real.strangers[half:]
    fake = model.sample(half, seed, per_identity=1)
    real_pairs, fake_pairs = (held @ fitting.T).ravel(), (held @ fake.T).ravel()
    real_nn, fake_nn = (held @ fitting.T).max(axis=1), (held @ fake.T).max(axis=1)
    fake_fake = fake @ fake.T
    np.fill_diagonal(fake_fake, -1.0)
    known = np.array(real.enrolled_people)
    same = real.enrolled[known == known[0]]
    fake_same = model.sample(len(same), seed + 1, per_identity=len(same))
    return {
        "method": "held-out strangers (second half) vs the fitting strangers (first half) vs as many distractors",
        "pairs": {"real": _summary(real_pairs), "distractor": _summary(fake_pairs)},
        "pairs_ks": float(ks_2samp(real_pairs, fake_pairs).statistic),
        "nearest": {
            "real": _summary(real_nn),
            "distractor": _summary(fake_nn),
            "distractor_to_distractor": _summary(fake_fake.max(axis=1)),
        },
        "nearest_ks": float(ks_2samp(real_nn, fake_nn).statistic),
        "nearest_ks_pvalue": float(ks_2samp(real_nn, fake_nn).pvalue),
        "same_person_mean": {
            "real": float(_upper(same @ same.T).mean()),
            "distractor": float(_upper(fake_same @ fake_same.T).mean()),
        },
    }


def _upper(square: np.ndarray) -> np.ndarray:
    return square[np.triu_indices(len(square), k=1)]
