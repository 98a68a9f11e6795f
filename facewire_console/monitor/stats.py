"""Small pure helpers of the monitor: latency percentiles and reading the threshold statistics.

The statistics payload on ``<prefix>/stats/thresholds`` comes from another
service; it is read defensively (several plausible key names, any missing part
is ``None``) so a change there degrades the monitor's threshold line instead
of crashing it.
"""

from __future__ import annotations

import math
from typing import Any

RECOMMENDED_KEYS = ("recommended", "recommended_threshold", "threshold_at_target", "recommend")
EER_KEYS = ("eer_threshold", "eer")
GRID_KEYS = ("grid", "rows", "curve", "points")


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


def threshold_summary(stats: dict[str, Any] | None, configured: float) -> dict[str, Any]:
    """Recommended threshold, and FAR / FRR at the configured threshold, from a stats payload."""
    summary: dict[str, Any] = {"configured": round(configured, 4), "recommended": None, "eer": None}
    summary.update({"far": None, "frr": None, "target_far": None, "available": stats is not None})
    if not stats:
        return summary
    summary["recommended"] = _threshold_value(_first(stats, RECOMMENDED_KEYS))
    summary["eer"] = _threshold_value(_first(stats, EER_KEYS))
    summary["target_far"] = _num(stats.get("target_far"))
    row = _nearest_row(_grid_rows(stats), configured)
    if row is not None:
        summary["far"], summary["frr"] = _num(row.get("far")), _num(row.get("frr"))
    return summary


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> object:
    return next((data[key] for key in keys if key in data), None)


def _threshold_value(value: object) -> float | None:
    """A number, or a ``{"threshold": x, ...}`` object as a recommendation may be published."""
    if isinstance(value, dict):
        value = value.get("threshold")
    return _num(value)


def _grid_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Grid rows as ``[{threshold, far, frr}, ...]`` from a list of objects or from parallel lists."""
    grid = _first(stats, GRID_KEYS)
    if isinstance(grid, list):
        return [row for row in grid if isinstance(row, dict)]
    source = grid if isinstance(grid, dict) else stats
    thresholds = source.get("thresholds")
    if not isinstance(thresholds, list):
        return []
    far, frr = source.get("far"), source.get("frr")
    rows = []
    for index, threshold in enumerate(thresholds):
        rows.append(
            {
                "threshold": threshold,
                "far": far[index] if isinstance(far, list) and index < len(far) else None,
                "frr": frr[index] if isinstance(frr, list) and index < len(frr) else None,
            }
        )
    return rows


def _nearest_row(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    usable = [row for row in rows if _num(row.get("threshold")) is not None]
    if not usable:
        return None
    return min(usable, key=lambda row: abs(float(row["threshold"]) - threshold))


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
