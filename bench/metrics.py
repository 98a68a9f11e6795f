"""Pure accuracy and latency metrics used by the benchmarks (no I/O, no models).

Conventions: a "score" is a cosine similarity (higher = more alike). A probe whose
face was not detected has no score; callers pass ``nan`` and it counts as a failure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def threshold_at_far(impostor_scores: ArrayLike, far: float) -> float:
    """The lowest threshold at which at most ``floor(far * n)`` impostor scores are ``>=`` it.

    ``nan`` impostor scores (nothing to accept) never count as accepted.
    """
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    scores = scores[~np.isnan(scores)]
    allowed = int(np.floor(far * len(scores) + 1e-9))
    if allowed >= len(scores):
        return float("-inf")
    return float(np.nextafter(scores[allowed], np.inf))


def false_accept_rate(impostor_scores: ArrayLike, threshold: float) -> float:
    """Share of impostor probes accepted (score >= threshold); ``nan`` scores are rejected."""
    scores = np.asarray(impostor_scores, dtype=np.float64)
    if len(scores) == 0:
        return 0.0
    return float(np.mean(np.nan_to_num(scores, nan=-np.inf) >= threshold))


def true_accept_rate(correct: ArrayLike, genuine_scores: ArrayLike, threshold: float) -> float:
    """Share of known probes named correctly (rank-1) with a score at or above ``threshold``."""
    right = np.asarray(correct, dtype=bool)
    scores = np.nan_to_num(np.asarray(genuine_scores, dtype=np.float64), nan=-np.inf)
    if len(right) == 0:
        return 0.0
    return float(np.mean(right & (scores >= threshold)))


def rank1_accuracy(correct: ArrayLike) -> float:
    """Share of known probes whose nearest enrolled person is the right one (misses are wrong)."""
    right = np.asarray(correct, dtype=bool)
    return float(right.mean()) if len(right) else 0.0


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises verification accuracy on (scores, same) pairs."""
    candidates = np.unique(np.concatenate([scores, [np.inf]]))
    accuracies = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def verification_accuracy(scores: ArrayLike, same: ArrayLike, folds: int = 10) -> dict[str, float]:
    """LFW-style 1:1 verification: per fold, the threshold is chosen on the other folds.

    Pair ``i`` belongs to fold ``i % folds``; ``nan`` scores (a face not found) become -1.
    Returns the mean and standard deviation of the fold accuracies and the mean threshold.
    """
    values = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-1.0)
    truth = np.asarray(same, dtype=bool)
    fold_of = np.arange(len(values)) % folds
    accuracies, thresholds = [], []
    for fold in range(folds):
        test = fold_of == fold
        if not test.any():
            continue
        threshold = best_threshold(values[~test], truth[~test])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((values[test] >= threshold) == truth[test])))
    return {
        "accuracy": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)),
        "threshold": float(np.mean(thresholds)),
        "pairs": len(values),
    }


def percentiles(values: ArrayLike, points: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}`` of ``values`` (empty input gives ``nan``)."""
    data = np.asarray(values, dtype=np.float64)
    return {f"p{p:g}": float(np.percentile(data, p)) if len(data) else float("nan") for p in points}


def recall_at_1(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Share of queries whose approximate nearest neighbour is the exact one."""
    return float(np.mean(np.asarray(approximate)[:, 0] == np.asarray(exact)[:, 0])) if len(exact) else 0.0
