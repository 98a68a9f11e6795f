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

Issue 23's levers: ``gallery_flip``: only the enrolled vectors are flip-augmented (paid once per photo,
probes as the edge sends them); ``views``: the enrolment photos' extra views at camera face sizes
(``bench.protocol_views``) join the gallery, ``pooled`` into one centroid per person or ``matched``
(each probe scored against the centroid of the view nearest its own face size); ``quality``: the
score needed rises with the probe's quality shortfall (``quality_shortfall``), the slope fitted on the
calibration fold (``bench.calibration``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import metrics
from bench.accuracy import Photo
from bench.protocol_embed import Embedded
from bench.protocol_views import VIEW_SIZES
from classifier_service.quality import shortfall

FARS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Decision:
    """Which decision techniques are on."""

    flip: bool = False
    person_norm: bool = False
    min_quality: float = 0.0
    centroid: bool = False
    gallery_flip: bool = False
    views: str = ""  # "", "pooled" or "matched"
    quality: bool = False
    two_sided: bool = False  # quality slopes fitted without the >= 0 constraint
    cohort: str = ""  # "", "mean" or "meanstd": the probe's scores against the other people (bench.calibration)

    @property
    def name(self) -> str:
        named = (
            ("flip", self.flip),
            ("person-norm", self.person_norm),
            ("centroid", self.centroid),
            ("enrol flip", self.gallery_flip),
            (f"enrol views ({self.views})", bool(self.views)),
            ("quality-aware threshold" + (" (two-sided)" if self.two_sided else ""), self.quality),
            (f"cohort norm ({self.cohort})", bool(self.cohort)),
        )
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
    shortfall: np.ndarray  # (probes, 3) quality shortfall in [0, 1]: size, sharpness, pose (0 for a miss)
    people: list[str]
    per_person: np.ndarray  # (probes, people) score of every probe for every person (nan: missed)
    truth: list[str]  # each probe's person
    cohort: np.ndarray  # (probes, 3) the probe's scores against the people other than its best: mean, std, max


def cohort_features(per_person: np.ndarray) -> np.ndarray:
    """(probes, 3): mean, standard deviation and maximum of each probe's scores against every enrolled person
    but its best one (0 for a missed probe or a gallery of fewer than 3 people)."""
    out = np.zeros((len(per_person), 3))
    found = ~np.isnan(per_person[:, 0]) if per_person.shape[1] else np.zeros(len(per_person), dtype=bool)
    if per_person.shape[1] < 3 or not found.any():
        return out
    rows = np.sort(per_person[found], axis=1)[:, :-1]  # without the best
    out[found] = np.column_stack([rows.mean(axis=1), rows.std(axis=1), rows[:, -1]])
    return out


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


def quality_shortfall(quality: np.ndarray | None) -> np.ndarray:
    """(size, sharpness, pose) shortfall in [0, 1] of a probe's quality row (size, sharpness, yaw, ...),
    by ``classifier_service.quality.shortfall``, the classifier's own rule."""
    if quality is None:
        return np.zeros(3)
    return np.array(shortfall({"size": float(quality[0]), "sharpness": float(quality[1]), "yaw": float(quality[2])}))


def gallery_sets(
    enrolled: list[Photo], gallery_emb: dict[str, Embedded], views: dict[str, Embedded] | None, decision: Decision
) -> list[tuple[float, list[str], np.ndarray]]:
    """The gallery as (face size it stands for, labels, vectors) sets: one set, or one per view when matched."""
    variant = "flip" if decision.flip or decision.gallery_flip else "plain"
    rows = [(p, e.vectors[variant]) for p in enrolled if (e := gallery_emb[p.sha256]).vectors is not None]
    main = (np.inf, [p.person for p, _ in rows], np.stack([v for _, v in rows]))
    if not decision.views:
        return [main]
    assert views is not None, "enrolment views were not embedded"
    suffix = "-flip" if decision.flip or decision.gallery_flip else ""
    sets = []
    for size in VIEW_SIZES:
        found = [(p.person, e.vectors[f"s{size}{suffix}"]) for p, _ in rows if (e := views[p.sha256]).vectors]
        sets.append((float(size), [n for n, _ in found], np.stack([v for _, v in found])))
    if decision.views == "pooled":
        return [(np.inf, main[1] + [n for s in sets for n in s[1]], np.concatenate([main[2], *[s[2] for s in sets]]))]
    return [*sets, main]


def person_scores(
    matrix: np.ndarray, labels: list[str], vectors: np.ndarray, people: list[str], similarity: Any, decision: Decision
) -> np.ndarray:
    """(probes, people): each probe's score for each person against one gallery set."""
    if decision.centroid:
        vectors, labels = centroids(vectors, labels, people), people
    columns = [np.array([label == person for label in labels]) for person in people]
    offsets = person_offsets(vectors, labels, similarity) if decision.person_norm else {}
    sims = similarity(matrix, vectors)
    return np.stack(
        [sims[:, column].max(axis=1) - offsets.get(p, 0.0) for p, column in zip(people, columns, strict=True)], axis=1
    )


def score_probes(
    enrolled: list[Photo],
    probes: list[Photo],
    gallery_emb: dict[str, Embedded],
    probe_emb: dict[str, Embedded],
    similarity: Any,
    decision: Decision,
    views: dict[str, Embedded] | None = None,
) -> Scored:
    """Best person and score of every probe under ``decision``."""
    variant = "flip" if decision.flip else "plain"
    sets = gallery_sets(enrolled, gallery_emb, views, decision)
    people = sorted(set(sets[-1][1]))
    found = [i for i, p in enumerate(probes) if probe_emb[p.sha256].vectors is not None]
    per_person = np.full((len(probes), len(people)), np.nan)
    sizes = np.zeros(len(probes))
    shortfalls = np.zeros((len(probes), 3))
    for i in found:
        quality = probe_emb[probes[i].sha256].quality
        sizes[i] = float(quality[0]) if quality is not None else np.inf
        shortfalls[i] = quality_shortfall(quality)
    if found:
        matrix = np.stack([probe_emb[probes[i].sha256].vectors[variant] for i in found])  # type: ignore[index]
        scored = [person_scores(matrix, labels, vectors, people, similarity, decision) for _, labels, vectors in sets]
        if len(scored) == 1:
            per_person[found] = scored[0]
        else:  # matched views: the set whose face size is nearest the probe's (log scale)
            set_sizes = np.log([min(size, 112.0) for size, _, _ in sets])
            nearest = np.abs(np.log(sizes[found])[:, None] - set_sizes[None, :]).argmin(axis=1)
            per_person[found] = np.stack(scored)[nearest, np.arange(len(found))]
    best = np.nan_to_num(per_person, nan=-np.inf).argmax(axis=1)
    scores = np.where(np.isnan(per_person[:, 0]), np.nan, per_person[np.arange(len(probes)), best])
    names = [people[b] if not np.isnan(score) else "" for b, score in zip(best, scores, strict=True)]
    known = np.array([p.known for p in probes], dtype=bool)
    correct = np.array([n == p.person for n, p in zip(names, probes, strict=True)], dtype=bool)
    unidentifiable = ~np.isnan(scores) & (sizes < decision.min_quality)
    truth = [p.person for p in probes]
    return Scored(
        names,
        scores,
        known,
        correct,
        unidentifiable,
        sizes,
        shortfalls,
        people,
        per_person,
        truth,
        cohort_features(per_person),
    )


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
