"""Nearest-neighbour identification with FAISS inner product on L2-normalised embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from facewire.schema import Candidate

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Match:
    """The decision for one probe: the name (or ``unknown``), best score and nearest people."""

    name: str
    score: float
    known: bool
    candidates: tuple[Candidate, ...]


class Matcher:
    """A flat FAISS index of the gallery; one search call per batch of probes."""

    def __init__(
        self,
        embeddings: np.ndarray | None,
        labels: list[str],
        threshold: float,
        top_k: int = 5,
        *,
        index: faiss.Index | None = None,
        negatives: tuple[np.ndarray, list[str]] | None = None,
    ) -> None:
        """Index ``embeddings`` (or take a ready ``index`` of the same rows); ``negatives`` are
        (vectors, person) examples of faces that are *not* that person."""
        if index is None:
            assert embeddings is not None
            if len(labels) != len(embeddings):
                raise ValueError("one label per embedding")
            dim = int(embeddings.shape[1]) if embeddings.ndim == 2 and embeddings.shape[1] else 0
            index = faiss.IndexFlatIP(max(dim, 1))
            if len(labels):
                index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        elif index.ntotal != len(labels):
            raise ValueError("one label per indexed vector")
        self.threshold = threshold
        self.top_k = top_k
        self.labels = list(labels)
        self.index = index
        self.dim = int(index.d) if len(labels) else 0
        self._negatives: dict[str, np.ndarray] = {}
        if negatives is not None and len(negatives[1]):
            vectors, people = negatives
            for person in set(people):
                rows = [i for i, p in enumerate(people) if p == person]
                self._negatives[person] = np.ascontiguousarray(vectors[rows], dtype=np.float32)

    def match(self, probes: np.ndarray) -> list[Match]:
        """Decide every row of ``probes`` (N, dim)."""
        if len(probes) == 0:
            return []
        if self.index.ntotal == 0:
            return [Match(UNKNOWN, 0.0, False, ()) for _ in range(len(probes))]
        k = min(self.top_k, self.index.ntotal)
        probes = np.ascontiguousarray(probes, dtype=np.float32)
        scores, indexes = self.index.search(probes, k)
        return [
            self._decide(probe, row_scores, row_indexes)
            for probe, row_scores, row_indexes in zip(probes, scores, indexes, strict=True)
        ]

    def _decide(self, probe: np.ndarray, scores: np.ndarray, indexes: np.ndarray) -> Match:
        best: dict[str, float] = {}
        for score, index in zip(scores, indexes, strict=True):
            if index >= 0:
                name = self.labels[index]
                best[name] = max(best.get(name, -1.0), float(score))
        candidates = tuple(Candidate(name, score) for name, score in sorted(best.items(), key=lambda kv: -kv[1]))
        named = [c for c in candidates if c.score >= self.threshold and not self._vetoed(probe, c)]
        if named:
            return Match(named[0].name, named[0].score, True, candidates)
        return Match(UNKNOWN, candidates[0].score, False, candidates)

    def _vetoed(self, probe: np.ndarray, candidate: Candidate) -> bool:
        """True when the probe is closer to a negative example of the person than to their enrolled faces."""
        negatives = self._negatives.get(candidate.name)
        return negatives is not None and float(np.max(negatives @ probe)) > candidate.score
