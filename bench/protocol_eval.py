"""Open-set identification metrics of one system under one protocol, with optional decision techniques.

A probe's score for a person is its best similarity to any of the person's enrolled vectors; the
probe's answer is the best-scoring person. Misses (no face detected) count as wrong for known probes
and as rejected for unknown probes; they are reported as detection misses.

Decision techniques (measured in the ablation, see ``bench.calibration``):
``flip``: flip-augmented embeddings (probe and gallery); ``person_norm``: each person's scores are
shifted by how much that person's enrolled faces resemble the other enrolled people (cohort mean of
the top-5 cross-person similarities, centred), so look-alike-prone people need more to be named;
``centroid``: a person's score is the similarity to the mean of their enrolled vectors (re-normalised)
instead of the best single enrolled vector; ``min_quality``: faces smaller than this many pixels are
answered ``unidentifiable`` (not named, not counted as a stranger accepted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import metrics
from bench.accuracy import Photo
from bench.protocol_embed import Embedded

FARS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Decision:
    """Which decision techniques are on."""

    flip: bool = False
    person_norm: bool = False
    min_quality: float = 0.0
    centroid: bool = False

    @property
    def name(self) -> str:
        named = (("flip", self.flip), ("person-norm", self.person_norm), ("centroid", self.centroid))
        parts = [name for name, on in named if on]
        if self.min_quality:
            parts.append(f"reject<{self.min_quality:g}px")
        return " + ".join(parts) or "nearest neighbour"


@dataclass
class Scored:
    """Per probe: the best person, its score (nan: missed), whether known/right, rejected as unidentifiable."""

    names: list[str]
    scores: np.ndarray
    known: np.ndarray
    correct: np.ndarray
    unidentifiable: np.ndarray
    sizes: np.ndarray


def person_offsets(vectors: np.ndarray, labels: list[str], similarity: Any) -> dict[str, float]:
    """Per person: mean of the top-5 similarities of their enrolled faces to other people's, minus the mean."""
    people = sorted(set(labels))
    if len(people) < 2:
        return {p: 0.0 for p in people}
    sims = similarity(vectors, vectors)
    label_array = np.array(labels)
    raw = {}
    for person in people:
        rows = label_array == person
        others = sims[np.ix_(rows, ~rows)].max(axis=0)
        raw[person] = float(np.sort(others)[-5:].mean())
    centre = float(np.mean(list(raw.values())))
    return {p: value - centre for p, value in raw.items()}


def centroids(vectors: np.ndarray, labels: list[str], people: list[str]) -> np.ndarray:
    """One row per person: the mean of their vectors, L2-normalised."""
    label_array = np.array(labels)
    means = np.stack([vectors[label_array == person].mean(axis=0) for person in people])
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def score_probes(
    enrolled: list[Photo],
    probes: list[Photo],
    gallery_emb: dict[str, Embedded],
    probe_emb: dict[str, Embedded],
    similarity: Any,
    decision: Decision,
) -> Scored:
    """Best person and score of every probe under ``decision``."""
    variant = "flip" if decision.flip else "plain"
    rows = [(p.person, e.vectors[variant]) for p in enrolled if (e := gallery_emb[p.sha256]).vectors is not None]
    labels = [name for name, _ in rows]
    gallery = np.stack([v for _, v in rows])
    people = sorted(set(labels))
    if decision.centroid:
        gallery, labels = centroids(gallery, labels, people), people
    columns = [np.array([label == person for label in labels]) for person in people]
    offsets = person_offsets(gallery, labels, similarity) if decision.person_norm else {}
    found = [i for i, p in enumerate(probes) if probe_emb[p.sha256].vectors is not None]
    scores = np.full(len(probes), np.nan)
    names = [""] * len(probes)
    sizes = np.zeros(len(probes))
    if found:
        matrix = np.stack([probe_emb[probes[i].sha256].vectors[variant] for i in found])  # type: ignore[index]
        sims = similarity(matrix, gallery)
        per_person = np.stack(
            [sims[:, column].max(axis=1) - offsets.get(p, 0.0) for p, column in zip(people, columns, strict=True)],
            axis=1,
        )
        best = per_person.argmax(axis=1)
        for row, i in enumerate(found):
            scores[i] = per_person[row, best[row]]
            names[i] = people[best[row]]
            quality = probe_emb[probes[i].sha256].quality
            sizes[i] = float(quality[0]) if quality is not None else np.inf
    known = np.array([p.known for p in probes], dtype=bool)
    correct = np.array([n == p.person for n, p in zip(names, probes, strict=True)], dtype=bool)
    unidentifiable = ~np.isnan(scores) & (sizes < decision.min_quality)
    return Scored(names, scores, known, correct, unidentifiable, sizes)


def summarise(scored: Scored, threshold: float) -> dict[str, Any]:
    """Detection misses, rank-1, TAR at FAR, and the decision at ``threshold`` (known correct, unknown rejected)."""
    known, unknown = scored.known, ~scored.known
    usable = np.where(scored.unidentifiable, np.nan, scored.scores)
    correct = scored.correct[known] & ~scored.unidentifiable[known]
    result: dict[str, Any] = {
        "known_probes": int(known.sum()),
        "unknown_probes": int(unknown.sum()),
        "known_missed": int(np.isnan(scored.scores[known]).sum()),
        "unknown_missed": int(np.isnan(scored.scores[unknown]).sum()),
        "unidentifiable": int(scored.unidentifiable.sum()),
        "rank1": metrics.rank1_accuracy(correct),
        "threshold": threshold,
        "known_correct_at_threshold": metrics.true_accept_rate(correct, usable[known], threshold),
        "unknown_rejected_at_threshold": 1.0 - metrics.false_accept_rate(usable[unknown], threshold),
    }
    result["detection_misses"] = result["known_missed"] + result["unknown_missed"]
    for far in FARS:
        at = metrics.threshold_at_far(usable[unknown], far)
        result[f"tar_at_far_{far:g}"] = metrics.true_accept_rate(correct, usable[known], at)
        result[f"threshold_at_far_{far:g}"] = at
    return result


def impostor_scores(scored: Scored) -> np.ndarray:
    """Scores of the unknown probes that were found and judged (the calibration's impostors)."""
    values = np.where(scored.unidentifiable, np.nan, scored.scores)[~scored.known]
    return values[~np.isnan(values)]
