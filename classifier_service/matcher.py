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

    def __init__(self, embeddings: np.ndarray, labels: list[str], threshold: float, top_k: int = 5) -> None:
        if len(labels) != len(embeddings):
            raise ValueError("one label per embedding")
        self.threshold = threshold
        self.top_k = top_k
        self.labels = list(labels)
        self.dim = int(embeddings.shape[1]) if embeddings.ndim == 2 and embeddings.shape[1] else 0
        self.index = faiss.IndexFlatIP(max(self.dim, 1))
        if len(labels):
            self.index.add(np.ascontiguousarray(embeddings, dtype=np.float32))

    def match(self, probes: np.ndarray) -> list[Match]:
        """Decide every row of ``probes`` (N, dim)."""
        if len(probes) == 0:
            return []
        if self.index.ntotal == 0:
            return [Match(UNKNOWN, 0.0, False, ()) for _ in range(len(probes))]
        k = min(self.top_k, self.index.ntotal)
        scores, indexes = self.index.search(np.ascontiguousarray(probes, dtype=np.float32), k)
        return [self._decide(row_scores, row_indexes) for row_scores, row_indexes in zip(scores, indexes, strict=True)]

    def _decide(self, scores: np.ndarray, indexes: np.ndarray) -> Match:
        best: dict[str, float] = {}
        for score, index in zip(scores, indexes, strict=True):
            if index >= 0:
                name = self.labels[index]
                best[name] = max(best.get(name, -1.0), float(score))
        candidates = tuple(Candidate(name, score) for name, score in sorted(best.items(), key=lambda kv: -kv[1]))
        top = candidates[0]
        known = top.score >= self.threshold
        return Match(top.name if known else UNKNOWN, top.score, known, candidates)
