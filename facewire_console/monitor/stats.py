"""Small pure helpers of the monitor: latency percentiles and the threshold line.

The statistics on ``<prefix>/stats/thresholds`` are a typed
:class:`~facewire.schema.stats.ThresholdReport`; a payload that is not one is
counted as malformed by the state, and the threshold line shows no figures.
"""

from __future__ import annotations

import math
from typing import Any

from facewire.schema.stats import ThresholdReport


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, nearest-rank."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_percentiles(values: list[float]) -> dict[str, float | int | None]:
    """p50 / p95 / p99 in milliseconds (``None`` without data) and how many values they cover."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    found: dict[str, float | int | None] = {f"p{q}": round(percentile(ordered, q), 1) for q in (50, 95, 99)}
    found["n"] = len(ordered)
    return found


def threshold_summary(report: ThresholdReport | None, configured: float) -> dict[str, Any]:
    """Recommended threshold, and FAR / FRR at the configured threshold, from the stats service's report."""
    summary: dict[str, Any] = {"configured": round(configured, 4), "recommended": None, "eer": None}
    summary.update({"far": None, "frr": None, "target_far": None, "available": report is not None})
    if report is None:
        return summary
    summary["recommended"] = None if report.recommended is None else report.recommended.threshold
    summary["eer"] = None if report.eer is None else report.eer.threshold
    summary["target_far"] = report.target_far
    if report.grid:
        row = min(report.grid, key=lambda point: abs(point.threshold - configured))
        summary["far"], summary["frr"] = row.far, row.frr
    return summary
