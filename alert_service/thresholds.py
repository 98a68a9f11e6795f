"""Threshold statistics, pure: score histograms, leave-one-out gallery scores, FAR/FRR grid, recommendations.

Scores are cosine similarities in [-1, 1] kept in 0.001-wide bins, so adding
or removing scores is O(1) per score and a report is a few cumulative sums,
whatever the number of scores. "FAR" here is open-set: the share of faces of
people who are not enrolled (impostors) whose best gallery score reaches the
threshold, i.e. who would be named.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facewire.schema.stats import GridPoint, Histograms, OperatingPoint, ThresholdReport

BIN_WIDTH = 0.001
BINS = 2000  # [-1, 1)
PLOT_BIN = 0.02
MIN_EXCEEDANCES = 10
TAIL_FRACTION = 0.1


def bin_of(scores: np.ndarray) -> np.ndarray:
    return np.clip(np.floor((np.asarray(scores, dtype=np.float64) + 1.0) / BIN_WIDTH + 1e-9), 0, BINS - 1).astype(
        np.int64
    )


class ScoreHistogram:
    """Counts of scores per 0.001 bin; ``tail(k)`` is how many scores are >= the k-th bin edge."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def add(self, scores: np.ndarray | list[float], sign: int = 1) -> None:
        np.add.at(self.counts, bin_of(np.asarray(scores)), sign)

    def remove(self, scores: np.ndarray | list[float]) -> None:
        self.add(scores, -1)

    def tails(self) -> np.ndarray:
        """tails[k] = number of scores >= edge k (k = 0..BINS; edge k = -1 + k * BIN_WIDTH)."""
        return np.concatenate([np.cumsum(self.counts[::-1])[::-1], [0]])

    def coarse(self) -> list[int]:
        """Counts in PLOT_BIN-wide bins (for plots)."""
        step = round(PLOT_BIN / BIN_WIDTH)
        return [int(x) for x in self.counts.reshape(-1, step).sum(axis=1)]

    def __iadd__(self, other: ScoreHistogram) -> ScoreHistogram:
        self.counts = self.counts + other.counts
        return self


def leave_one_out(embeddings: np.ndarray, labels: list[str], chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of every enrolled photo against the rest of the gallery.

    Genuine: the photo's best score against its own person's other photos (what
    naming it would need). Impostor: its best score against every other person
    (what it would score if its person were not enrolled): an unknown face.
    """
    if len(labels) < 2:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf
        same = codes[start : start + chunk, None] == codes[None, :]
        best_same = np.where(same, sims, -np.inf).max(axis=1)
        best_other = np.where(same, -np.inf, sims).max(axis=1)
        genuine.append(best_same[np.isfinite(best_same)])
        impostor.append(best_other[np.isfinite(best_other)])
    return np.concatenate(genuine), np.concatenate(impostor)


def report(
    genuine: ScoreHistogram,
    impostor: ScoreHistogram,
    live: ScoreHistogram,
    target_far: float,
    grid_step: float,
    **meta: Any,
) -> ThresholdReport:
    """FAR, FRR and the live unknown share over the grid; the target-FAR and equal-error thresholds."""
    edges = -1.0 + np.arange(BINS + 1) * BIN_WIDTH
    far = _rate(impostor.tails(), impostor.total)
    accepted = _rate(genuine.tails(), genuine.total)
    frr = None if accepted is None else 1.0 - accepted
    live_named = _rate(live.tails(), live.total)
    unknown = None if live_named is None else 1.0 - live_named
    recommended = eer = None
    if far is not None and frr is not None:
        k, method = target_index(impostor, far, target_far)
        recommended = OperatingPoint(round(float(edges[k]), 3), float(far[k]), float(frr[k]), method)
        gap = np.abs(far - frr)
        ties = np.flatnonzero(gap <= gap.min() + 1e-12)
        e = int(ties[len(ties) // 2])  # the middle of a range where both rates are equal (e.g. both 0)
        eer = OperatingPoint(round(float(edges[e]), 3), float(far[e]), float(frr[e]))
    grid = []
    for t in np.arange(0.0, 1.0 + 1e-9, grid_step):
        k = round((t + 1.0) / BIN_WIDTH)
        grid.append(
            GridPoint(
                threshold=round(float(t), 4),
                far=None if far is None else float(far[k]),
                frr=None if frr is None else float(frr[k]),
                unknown_share=None if unknown is None else float(unknown[k]),
            )
        )
    histogram = Histograms(-1.0, PLOT_BIN, tuple(genuine.coarse()), tuple(impostor.coarse()), tuple(live.coarse()))
    return ThresholdReport(
        target_far=target_far, recommended=recommended, eer=eer, grid=tuple(grid), histogram=histogram, **meta
    )


def target_index(impostor: ScoreHistogram, far: np.ndarray, target_far: float) -> tuple[int, str]:
    """The edge index of the threshold for ``target_far``.

    With at least MIN_EXCEEDANCES impostor scores expected above it, the
    empirical quantile is used. Below that the empirical tail is too thin (with
    500 impostor scores and a target of 1e-3 it would put the threshold at the
    highest score seen, far too low), so an exponential tail (peaks over
    threshold) is fitted to the top TAIL_FRACTION of impostor scores and
    extrapolated: t = u + mean_excess * ln(TAIL_FRACTION / target_far).
    """
    empirical = int(np.argmax(far <= target_far))
    total = impostor.total
    if target_far * total >= MIN_EXCEEDANCES or target_far >= TAIL_FRACTION:
        return empirical, "empirical"
    tails = impostor.tails()
    u_index = int(np.argmax(tails <= TAIL_FRACTION * total)) - 1
    top = impostor.counts[u_index:]
    centres = -1.0 + (np.arange(u_index, BINS) + 0.5) * BIN_WIDTH
    u = -1.0 + u_index * BIN_WIDTH
    excess = float((top * (centres - u)).sum() / max(top.sum(), 1))
    fitted = u + excess * float(np.log(TAIL_FRACTION / target_far))
    index = int(np.clip(np.ceil((fitted + 1.0) / BIN_WIDTH - 1e-9), 0, BINS))
    return max(index, empirical), "tail-fit"


def _rate(tails: np.ndarray, total: int) -> np.ndarray | None:
    return None if total == 0 else tails / float(total)
