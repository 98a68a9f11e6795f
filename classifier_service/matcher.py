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
        return self.threshold + gallery_margin(len(self._people[0]))

    @cached_property
    def _people(self) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """Every enrolled person, each indexed row's person (by position in that list) and, when scoring by
        centroid, the centroids in the same order (built at the first match: a gallery's follower hands its
        centroids in ready)."""
        positions: dict[str, int] = {}
        rows = np.fromiter((positions.setdefault(label, len(positions)) for label in self.labels), dtype=np.int64)
        names = list(positions)
        centroids = np.stack([self._centroids[name] for name in names]).astype(np.float32) if self._centroids else None
        return names, rows, centroids

    @cached_property
    def _centroid_sum(self) -> np.ndarray | None:
        """The sum of every person's centroid (the cohort term's one product per batch); None without."""
        centroids = self._people[2]
        return None if centroids is None else centroids.sum(axis=0, dtype=np.float64).astype(np.float32)

    def match(self, probes: np.ndarray, margins: np.ndarray | None = None) -> list[Match]:
        """Decide every row of ``probes`` (N, dim); ``margins`` (N): how much more each face needs for its
        quality (``classifier_service.quality.margin``; default none).

        The whole batch at once: each row's candidate people (the first of each person among the nearest
        photos, with that person's best photo score), their centroid scores in one product, their order and
        the score each face needs, as arrays; only the veto and the Match objects are per face.
        """
        if len(probes) == 0:
            return []
        extra = np.zeros(len(probes)) if margins is None else np.asarray(margins, dtype=np.float64)
        if self.index.ntotal == 0:
            return [Match(UNKNOWN, 0.0, False, (), self.threshold + float(m)) for m in extra]
        k = min(self.top_k, self.index.ntotal)
        probes = np.ascontiguousarray(probes, dtype=np.float32)
        scores, indexes = self.index.search(probes, k)
        names, person_of, centroids = self._people
        people = np.where(indexes >= 0, person_of[np.maximum(indexes, 0)], -1)
        same = people[:, :, None] == people[:, None, :]  # (N, k, k): the same person at both ranks
        earlier = np.tril(np.ones((k, k), dtype=bool), -1)
        first = (people >= 0) & ~np.any(same & earlier, axis=2)  # a person's first place among the nearest
        nearest = np.maximum(np.where(same, scores[:, None, :], -np.inf).max(axis=2), -1.0)
        if centroids is not None:
            chosen = centroids[np.maximum(people, 0)]  # (N, k, dim)
            best = np.einsum("nkd,nd->nk", chosen, probes)
        else:
            best = nearest
        order = np.argsort(np.where(first, -best.astype(np.float64), np.inf), axis=1, kind="stable")
        counts = first.sum(axis=1)
        ranked = np.take_along_axis(best, order, axis=1).astype(np.float64)
        if self.cohort.weight and self._centroid_sum is not None:
            tops = np.where(counts > 0, ranked[:, 0], 0.0)
            extra = extra + self.cohort.margins(probes @ self._centroid_sum, tops, len(self._centroids))
        needed = self.needed + extra
        passes = ranked >= needed[:, None]
        ranked_people = np.take_along_axis(people, order, axis=1).tolist()
        row_names = [[names[p] for p in row[:n]] for row, n in zip(ranked_people, counts.tolist(), strict=True)]
        rows = zip(
            probes,
            row_names,
            ranked.tolist(),
            np.take_along_axis(nearest, order, axis=1).astype(np.float64).tolist(),
            passes.tolist(),
            needed.tolist(),
            strict=True,
        )
        return [self._decide(*row) for row in rows]

    def _decide(
        self,
        probe: np.ndarray,
        names: list[str],
        scores: list[float],
        nearest: list[float],
        passes: list[bool],
        needed: float,
    ) -> Match:
        """One face's Match from its candidates, best first (``names``; their ``scores``, each one's nearest
        photo and whether it reaches ``needed``): the first that reaches it and is not vetoed is named."""
        candidates = tuple(Candidate(name, score) for name, score in zip(names, scores, strict=False))
        for i, candidate in enumerate(candidates):
            if passes[i] and not self._vetoed(probe, candidate.name, nearest[i]):
                return Match(candidate.name, candidate.score, True, candidates, needed)
        return Match(UNKNOWN, candidates[0].score if candidates else 0.0, False, candidates, needed)

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
    people, _counts, sums = person_sums(embeddings, labels)
    return dict(zip(people, normalised(sums), strict=True))


def person_sums(vectors: np.ndarray, labels: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each person (sorted), their number of rows and the float64 sum of their vectors (people, dim)."""
    people, rows = np.unique(np.array(labels), return_inverse=True)
    counts = np.bincount(rows, minlength=len(people))
    columns = [np.bincount(rows, weights=vectors[:, d], minlength=len(people)) for d in range(vectors.shape[1])]
    sums = np.stack(columns, axis=1).astype(np.float64)  # a bincount per dimension: ~5x faster than np.add.at
    return [str(person) for person in people], counts, sums


def normalised(sums: np.ndarray) -> np.ndarray:
    """Centroids from sums of vectors (one per row, or one vector): L2-normalised, float32."""
    norms = np.maximum(np.linalg.norm(sums, axis=-1, keepdims=True), 1e-12)
    return (sums / norms).astype(np.float32)
