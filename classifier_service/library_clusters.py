"""Cluster a library's faces into people, enrolled or not (scikit-learn's HDBSCAN), and score a clustering.

Faces are unit vectors, so Euclidean distance orders pairs exactly as cosine
similarity does (d² = 2 - 2·cos). HDBSCAN needs no number of people and leaves
faces that resemble no one else as noise. ``min_cluster_size`` 2 makes a person
seen twice a cluster. HDBSCAN links faces through chains of neighbours, so a
cluster is then checked against its centroid at the naming threshold: a face
too unlike the rest is noise rather than a wrong member (on lfw-dev this lifts
pairwise precision from 0.980 to 0.988 at the same recall, docs/gallery.md).
``recluster`` keeps earlier clusters: a new face joins the
nearest cluster whose centroid it matches at the naming threshold, and only
the faces left over are clustered afresh.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NOISE = -1


@dataclass(frozen=True)
class PairScores:
    precision: float
    recall: float
    f1: float


def cluster_faces(
    vectors: np.ndarray, join_cosine: float, min_cluster_size: int = 2, check_centroid: bool = True
) -> np.ndarray:
    """A cluster label per face (``NOISE`` for none): HDBSCAN over the unit embeddings, then every face
    under ``join_cosine`` to its cluster's centroid (the bar for naming a face) is taken out as noise."""
    if len(vectors) < max(2, min_cluster_size):
        return np.full(len(vectors), NOISE, dtype=np.int64)
    from sklearn.cluster import HDBSCAN  # the `cluster` extra: only `scan --cluster` needs it

    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=1, copy=True)
    labels = np.asarray(model.fit_predict(vectors.astype(np.float64)), dtype=np.int64)
    if (labels == NOISE).all():
        # HDBSCAN never returns a single cluster (allowing it lumps a whole library together, measured in
        # docs/gallery.md): a set of faces with no cluster is tested as one person around its medoid.
        labels = _one_person(vectors, join_cosine)
    return _prune(vectors, labels, join_cosine, min_cluster_size) if check_centroid else labels


def _one_person(vectors: np.ndarray, join_cosine: float) -> np.ndarray:
    """Label 0 for the faces like the medoid (the face most like all the others) at ``join_cosine``."""
    similarity = vectors @ vectors.T
    medoid = int(similarity.mean(axis=1).argmax())
    return np.where(similarity[medoid] >= join_cosine, 0, NOISE).astype(np.int64)


def _prune(vectors: np.ndarray, labels: np.ndarray, join_cosine: float, min_cluster_size: int) -> np.ndarray:
    """``labels`` with faces unlike their cluster's centroid made noise, and clusters left too small dissolved."""
    pruned = labels.copy()
    for label in set(labels.tolist()) - {NOISE}:
        members = np.flatnonzero(labels == label)
        centroid = _unit(vectors[members].mean(axis=0))
        pruned[members[vectors[members] @ centroid < join_cosine]] = NOISE
        if (pruned == label).sum() < min_cluster_size:
            pruned[pruned == label] = NOISE
    return pruned


def recluster(
    vectors: np.ndarray, previous: Sequence[int | None], join_cosine: float, min_cluster_size: int = 2
) -> np.ndarray:
    """Labels that keep ``previous`` ones (None: a face not clustered before) and fold the new faces in."""
    labels = np.array([NOISE if p is None else p for p in previous], dtype=np.int64)
    known = sorted({int(p) for p in previous if p is not None and p != NOISE})
    todo = np.array([p is None or p == NOISE for p in previous])
    if known and todo.any():
        centroids = np.stack([_unit(vectors[labels == c].mean(axis=0)) for c in known])
        similarity = vectors[todo] @ centroids.T
        best = similarity.argmax(axis=1)
        joined = similarity[np.arange(len(best)), best] >= join_cosine
        indices = np.flatnonzero(todo)
        labels[indices[joined]] = np.array(known)[best[joined]]
        todo[indices[joined]] = False
    if todo.sum() >= min_cluster_size:
        fresh = cluster_faces(vectors[todo], join_cosine, min_cluster_size)
        start = (max(known) + 1) if known else 0
        labels[np.flatnonzero(todo)] = np.where(fresh == NOISE, NOISE, fresh + start)
    return labels


def cluster_person(names: Sequence[str], known: Sequence[bool]) -> str | None:
    """The enrolled person a cluster is, when more than half of its faces were named as them."""
    votes = Counter(name for name, is_known in zip(names, known, strict=True) if is_known)
    if not votes:
        return None
    name, count = votes.most_common(1)[0]
    return name if count * 2 > len(names) else None


def pairwise_scores(truth: Sequence[str], labels: Sequence[int]) -> PairScores:
    """Precision, recall and F1 over all pairs of faces put together (noise faces are singletons)."""
    predicted = _singletons(labels)
    same_pred = _pairs(predicted)
    same_true = _pairs(list(truth))
    both = _pairs([f"{t}\0{p}" for t, p in zip(truth, predicted, strict=True)])
    precision = both / same_pred if same_pred else 1.0
    recall = both / same_true if same_true else 1.0
    return PairScores(precision, recall, _f1(precision, recall))


def bcubed_scores(truth: Sequence[str], labels: Sequence[int]) -> PairScores:
    """BCubed precision, recall and F1: per face, the share of its cluster that is its person, and back."""
    predicted = _singletons(labels)
    by_pred = Counter(predicted)
    by_true = Counter(truth)
    by_both = Counter(zip(truth, predicted, strict=True))
    n = len(truth)
    precision = sum(by_both[(t, p)] / by_pred[p] for t, p in zip(truth, predicted, strict=True)) / n
    recall = sum(by_both[(t, p)] / by_true[t] for t, p in zip(truth, predicted, strict=True)) / n
    return PairScores(precision, recall, _f1(precision, recall))


def _singletons(labels: Sequence[int]) -> list[str]:
    return [f"noise-{i}" if label == NOISE else str(label) for i, label in enumerate(labels)]


def _pairs(groups: Sequence[str]) -> int:
    return sum(k * (k - 1) // 2 for k in Counter(groups).values())


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)
