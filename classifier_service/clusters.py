"""Incremental leader clustering of unknown faces on cosine similarity.

Each new unknown embedding joins the cluster whose centre (normalised mean of
its members) is most similar, if that similarity reaches ``cosine``; otherwise
it starts a new cluster. Why not DBSCAN: this is O(clusters) per face, needs no
re-clustering pass as unknowns stream in, keeps cluster ids stable (so an
operator can name cluster 12 and it is still 12), and needs no new dependency
(scikit-learn is not installed). Its weakness is order dependence: the first
face of a person seeds the centre, so a poor first photo can split a person
into two clusters; naming both fixes that.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from classifier_service.gallery_store import Unknown


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster for listing: size, time span and the nodes that saw it."""

    cluster: int
    size: int
    first_seen: float
    last_seen: float
    nodes: dict[str, int]


class LeaderClusters:
    """Cluster centres kept in memory; thread-safe ``assign``."""

    def __init__(self, cosine: float) -> None:
        self.cosine = cosine
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._next = 1
        self._lock = threading.Lock()

    def restore(self, unknowns: list[Unknown]) -> None:
        """Rebuild the centres from stored members (after a restart)."""
        with self._lock:
            self._sums.clear()
            self._counts.clear()
            for item in unknowns:
                self._add(item.cluster, item.vector)
            self._next = max(self._sums, default=0) + 1

    def assign(self, vector: np.ndarray) -> int:
        """The cluster ``vector`` joins (a new one if no centre is close enough)."""
        with self._lock:
            best, score = self._nearest(vector)
            cluster = best if best is not None and score >= self.cosine else self._new()
            self._add(cluster, vector)
            return cluster

    def remove(self, cluster: int) -> None:
        with self._lock:
            self._sums.pop(cluster, None)
            self._counts.pop(cluster, None)

    def _nearest(self, vector: np.ndarray) -> tuple[int | None, float]:
        if not self._sums:
            return None, -1.0
        ids = list(self._sums)
        centres = np.stack([self._sums[i] for i in ids])
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-9)
        scores = centres @ vector
        best = int(np.argmax(scores))
        return ids[best], float(scores[best])

    def _new(self) -> int:
        cluster = self._next
        self._next += 1
        return cluster

    def _add(self, cluster: int, vector: np.ndarray) -> None:
        self._sums[cluster] = self._sums.get(cluster, np.zeros_like(vector, dtype=np.float32)) + vector
        self._counts[cluster] = self._counts.get(cluster, 0) + 1


def summarise(unknowns: list[Unknown], min_size: int = 1) -> list[ClusterSummary]:
    """Clusters of at least ``min_size`` members, largest first."""
    members: dict[int, list[Unknown]] = {}
    for item in unknowns:
        members.setdefault(item.cluster, []).append(item)
    summaries = [
        ClusterSummary(
            cluster=cluster,
            size=len(items),
            first_seen=min(i.ts for i in items),
            last_seen=max(i.ts for i in items),
            nodes=dict(Counter(i.node for i in items)),
        )
        for cluster, items in members.items()
        if len(items) >= min_size
    ]
    return sorted(summaries, key=lambda s: (-s.size, s.cluster))
