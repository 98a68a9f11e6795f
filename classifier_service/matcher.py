"""Nearest-neighbour identification with FAISS inner product on L2-normalised embeddings.

FAISS finds the ``top_k`` nearest enrolled faces; each candidate person is then scored by the probe's
similarity to that person's *centroid* (the mean of their enrolled embeddings, re-normalised), not by
the single nearest photo: measured on lfw-dev (docs/accuracy.md, decision ablation) it names more
known people at the same false-accept rate. The default threshold is calibrated for this scoring.

The score needed to name a face (``Match.threshold``) is the threshold, plus a rise with the number of
people enrolled (``classifier_service.quality.gallery_margin``: a stranger has more people to resemble
in a larger gallery), plus the face's own quality margin (``classifier_service.quality.margin``,
passed in by the caller), plus its cohort margin (``classifier_service.quality.Cohort``: a face that
scores high against every enrolled person needs more; one matrix-vector product per batch against the sum
of the centroids, whatever the gallery's size).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from classifier_service import index_choice
from classifier_service.quality import Cohort, cohort_for, gallery_margin
from facewire.config import ModelSettings
from facewire.schema import Candidate

if TYPE_CHECKING:
    import faiss  # the `server` extra: imported where an index is built, so edge installs import this module

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Match:
    """The decision for one probe: the name (or ``unknown``), best score, nearest people and the score that
    was needed to name this face."""

    name: str
    score: float
    known: bool
    candidates: tuple[Candidate, ...]
    threshold: float


class Matcher:
    """A FAISS index of the gallery (its kind chosen by size: ``index_choice``); one search call per batch."""

    def __init__(
        self,
        embeddings: np.ndarray | None,
        labels: list[str],
        threshold: float,
        top_k: int = 5,
        *,
        index: faiss.Index | None = None,
        negatives: tuple[np.ndarray, list[str]] | None = None,
        centroid: bool = True,
        centroids: dict[str, np.ndarray] | None = None,
        cohort: Cohort | None = None,
    ) -> None:
        """Index ``embeddings`` (or take a ready ``index`` of the same rows); ``negatives`` are
        (vectors, person) examples of faces that are *not* that person; ``centroids``: every person's
        centroid, ready (kept per person by a shared gallery's follower, ``classifier_service.gallery.live``);
        ``cohort``: the cohort normalisation (default: ``shipped_cohort``)."""
        if index is None:
            assert embeddings is not None
            if len(labels) != len(embeddings):
                raise ValueError("one label per embedding")
            index = index_choice.build(embeddings)  # flat, or a compressed scan with exact re-ranking
        elif index.ntotal != len(labels):
            raise ValueError("one label per indexed vector")
        self.threshold = threshold
        self.top_k = top_k
        self.labels = list(labels)
        self.index = index
        self.dim = int(index.d) if len(labels) else 0
        if centroid and centroids is not None:
            self._centroids = centroids
        else:
            self._centroids = person_centroids(embeddings, index, self.labels) if centroid and len(labels) else {}
        self.cohort = cohort if cohort is not None else shipped_cohort()
        self._centroid_sum = (
            np.sum(list(self._centroids.values()), axis=0, dtype=np.float64).astype(np.float32)
            if self._centroids
            else None
        )
        self._negatives: dict[str, np.ndarray] = {}
        if negatives is not None and len(negatives[1]):
            vectors, people = negatives
            for person in set(people):
                rows = [i for i, p in enumerate(people) if p == person]
                self._negatives[person] = np.ascontiguousarray(vectors[rows], dtype=np.float32)

    @cached_property
    def needed(self) -> float:
        """The score needed to name a face of full quality in this gallery: the threshold plus its rise with
        the number of people enrolled."""
        return self.threshold + gallery_margin(len(set(self.labels)))

    def match(self, probes: np.ndarray, margins: np.ndarray | None = None) -> list[Match]:
        """Decide every row of ``probes`` (N, dim); ``margins`` (N): how much more each face needs for its
        quality (``classifier_service.quality.margin``; default none)."""
        if len(probes) == 0:
            return []
        extra = np.zeros(len(probes)) if margins is None else np.asarray(margins, dtype=np.float64)
        if self.index.ntotal == 0:
            return [Match(UNKNOWN, 0.0, False, (), self.threshold + float(m)) for m in extra]
        k = min(self.top_k, self.index.ntotal)
        probes = np.ascontiguousarray(probes, dtype=np.float32)
        scores, indexes = self.index.search(probes, k)
        best = [
            self._scores(probe, row_scores, row_indexes)
            for probe, row_scores, row_indexes in zip(probes, scores, indexes, strict=True)
        ]
        if self.cohort.weight and self._centroid_sum is not None:
            tops = np.array([max(b[0].values(), default=0.0) for b in best])
            extra = extra + self.cohort.margins(probes @ self._centroid_sum, tops, len(self._centroids))
        return [
            self._decide(probe, person, nearest, self.needed + float(margin))
            for probe, (person, nearest), margin in zip(probes, best, extra, strict=True)
        ]

    def _scores(
        self, probe: np.ndarray, scores: np.ndarray, indexes: np.ndarray
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The probe's score for each candidate person (its centroid's, else the nearest photo's) and the
        nearest enrolled photo of each."""
        best: dict[str, float] = {}
        for score, index in zip(scores, indexes, strict=True):
            if index >= 0:
                name = self.labels[index]
                best[name] = max(best.get(name, -1.0), float(score))
        nearest = dict(best)  # the veto compares negatives with the nearest enrolled photo, as before
        if self._centroids:
            best = {name: float(self._centroids[name] @ probe) for name in best}
        return best, nearest

    def _decide(self, probe: np.ndarray, best: dict[str, float], nearest: dict[str, float], needed: float) -> Match:
        candidates = tuple(Candidate(name, score) for name, score in sorted(best.items(), key=lambda kv: -kv[1]))
        named = [c for c in candidates if c.score >= needed and not self._vetoed(probe, c.name, nearest[c.name])]
        if named:
            return Match(named[0].name, named[0].score, True, candidates, needed)
        return Match(UNKNOWN, candidates[0].score, False, candidates, needed)

    def _vetoed(self, probe: np.ndarray, name: str, nearest: float) -> bool:
        """True when the probe is closer to a negative example of the person than to their enrolled faces."""
        negatives = self._negatives.get(name)
        return negatives is not None and float(np.max(negatives @ probe)) > nearest


def shipped_cohort() -> Cohort:
    """The cohort normalisation of the shipped settings for the default embedder (``model.embedder``)."""
    return cohort_for(ModelSettings().embedder)


def person_centroids(embeddings: np.ndarray | None, index: faiss.Index, labels: list[str]) -> dict[str, np.ndarray]:
    """Each person's mean enrolled embedding, L2-normalised (from ``embeddings``, else read back from the
    index); empty when neither can give the vectors (an index without a direct map): nearest-photo scoring."""
    if embeddings is None:
        try:
            embeddings = index.reconstruct_n(0, index.ntotal)
        except RuntimeError:
            return {}
    people, rows = np.unique(np.array(labels), return_inverse=True)
    columns = [np.bincount(rows, weights=embeddings[:, d], minlength=len(people)) for d in range(embeddings.shape[1])]
    sums = np.stack(columns, axis=1).astype(np.float64)  # a bincount per dimension: ~5x faster than np.add.at
    sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return {str(person): sums[i].astype(np.float32) for i, person in enumerate(people)}
