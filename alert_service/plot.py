"""PNG plot of a ThresholdReport: score distributions and FAR / FRR curves (needs the ``plot`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facewire.errors import ConfigError
from facewire.schema.stats import Histograms, ThresholdReport


def plot_report(stats: ThresholdReport, path: Path) -> None:
    """Genuine / impostor / live score histograms (top) and FAR, FRR against the threshold (bottom)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("plotting needs matplotlib: pip install 'facewire[plot]'") from exc
    hist = stats.histogram or Histograms(-1.0, 0.02)
    centres = hist.start + (np.arange(len(hist.genuine)) + 0.5) * hist.width
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for key, colour in (("genuine", "tab:green"), ("impostor", "tab:red"), ("live", "tab:blue")):
        counts = np.asarray(getattr(hist, key), dtype=float)
        if counts.sum() > 0:
            top.step(centres, counts / counts.sum(), where="mid", color=colour, label=f"{key} ({int(counts.sum())})")
    top.set_ylabel("share of scores")
    top.legend()
    thresholds = [p.threshold for p in stats.grid]
    for key, colour in (("far", "tab:red"), ("frr", "tab:green"), ("unknown_share", "tab:blue")):
        values: list[float | None] = [getattr(p, key) for p in stats.grid]
        if all(v is not None for v in values):
            bottom.plot(thresholds, [max(float(v or 0.0), 1e-5) for v in values], color=colour, label=key)
    bottom.set_yscale("log")
    bottom.set_xlabel("cosine threshold")
    bottom.set_ylabel("rate (0 drawn at 1e-5)")
    for point, style in ((stats.recommended, "--"), (stats.eer, ":")):
        if point is not None:
            for axis in (top, bottom):
                axis.axvline(point.threshold, color="black", linestyle=style)
    bottom.legend()
    top.set_xlim(-0.2, 1.0)
    figure.suptitle(f"facewire thresholds (target FAR {stats.target_far:g})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
