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

from classifier_service.gallery.store import Unknown


@dataclass(frozen=True)
class ClusterSummary:
    """One cluster for listing: size, time span and the nodes that saw it."""

    cluster: int
    size: int
    first_seen: float
    last_seen: float
    nodes: dict[str, int]


class LeaderClusters:
    """Cluster centres kept in memory as one matrix (one mat-vec per face); thread-safe ``assign``."""

    def __init__(self, cosine: float) -> None:
        self.cosine = cosine
        self._lock = threading.Lock()
        self._reset(0)

    def _reset(self, dim: int) -> None:
        self._sums = np.zeros((0, dim), dtype=np.float32)
        self._centres = np.zeros((0, dim), dtype=np.float32)
        self._ids: list[int] = []
        self._row: dict[int, int] = {}
        self._next = 1

    def restore(self, unknowns: list[Unknown]) -> None:
        """Rebuild the centres from stored members (after a restart)."""
        with self._lock:
            self._reset(len(unknowns[0].vector) if unknowns else 0)
            for item in unknowns:
                self._add(item.cluster, item.vector)
            self._next = max(self._ids, default=0) + 1

    def assign(self, vector: np.ndarray) -> int:
        """The cluster ``vector`` joins (a new one if no centre is close enough)."""
        with self._lock:
            if self._sums.shape[1] != len(vector):
                self._reset(len(vector))
            cluster = self._next
            if self._ids:
                scores = self._centres[: len(self._ids)] @ vector
                best = int(np.argmax(scores))
                if scores[best] >= self.cosine:
                    cluster = self._ids[best]
            if cluster == self._next:
                self._next += 1
            self._add(cluster, vector)
            return cluster

    def remove(self, cluster: int) -> None:
        """Forget a cluster's centre (its row stays, zeroed, so no face joins it again)."""
        with self._lock:
            row = self._row.pop(cluster, None)
            if row is not None:
                self._sums[row] = 0.0
                self._centres[row] = 0.0

    def _add(self, cluster: int, vector: np.ndarray) -> None:
        row = self._row.get(cluster)
        if row is None:
            row = len(self._ids)
            if row == len(self._sums):
                grow = max(64, row)
                self._sums = np.vstack([self._sums, np.zeros((grow, len(vector)), dtype=np.float32)])
                self._centres = np.vstack([self._centres, np.zeros((grow, len(vector)), dtype=np.float32)])
            self._ids.append(cluster)
            self._row[cluster] = row
        self._sums[row] += vector
        self._centres[row] = self._sums[row] / max(float(np.linalg.norm(self._sums[row])), 1e-9)


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
