"""Threshold statistics state, updated incrementally: gallery scores per gallery version, confirmations, live scores."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np

from alert_service.store import Confirmation, LogRow
from alert_service.thresholds import ScoreHistogram, leave_one_out, report
from facewire.schema import FaceResult
from facewire.schema.stats import ThresholdReport

LIVE_MEMORY = 200_000


def confirmed_scores(truth: str | None, row: LogRow) -> tuple[list[float], list[float]]:
    """Genuine and impostor scores an operator's verdict reveals about one result.

    A stranger's best score is an impostor score. For a named truth, its
    candidate score is genuine (if it is not among the candidates, the lowest
    candidate score bounds it from above) and the best other person's score
    is an impostor score.
    """
    scores = {c.name: c.score for c in row.candidates} or {row.name: row.score}
    if truth is None:
        return [], [max(row.score, *scores.values())]
    genuine = [scores.get(truth, min(scores.values()))]
    others = [score for name, score in scores.items() if name != truth]
    return genuine, ([max(others)] if others else [])


class ThresholdStats:
    """Holds every score histogram; thread-safe; ``dirty`` says whether a new report is due."""

    def __init__(self, target_far: float, grid_step: float) -> None:
        self.target_far = target_far
        self.grid_step = grid_step
        self.gallery_version = ""
        self.model = ""
        self.gallery_genuine = ScoreHistogram()
        self.gallery_impostor = ScoreHistogram()
        self.confirmed_genuine = ScoreHistogram()
        self.confirmed_impostor = ScoreHistogram()
        self.live = ScoreHistogram()
        self.dirty = False
        self._confirmed: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
        self._live_keys: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._lock = threading.Lock()

    def set_gallery(self, embeddings: np.ndarray, labels: list[str], version: str, model: str) -> None:
        """Replace the gallery's leave-one-out scores (only when its version changed)."""
        if version == self.gallery_version:
            return
        genuine, impostor = leave_one_out(embeddings, labels)
        fresh_genuine, fresh_impostor = ScoreHistogram(), ScoreHistogram()
        fresh_genuine.add(genuine)
        fresh_impostor.add(impostor)
        with self._lock:
            self.gallery_genuine, self.gallery_impostor = fresh_genuine, fresh_impostor
            self.gallery_version, self.model = version, model
            self.dirty = True

    def add_live(self, result: FaceResult) -> bool:
        """Count a live result's best score once per (node, seq); False for a repeat."""
        with self._lock:
            if result.key in self._live_keys:
                return False
            self._live_keys[result.key] = None
            if len(self._live_keys) > LIVE_MEMORY:
                self._live_keys.popitem(last=False)
            self.live.add([result.score])
            self.dirty = True
            return True

    def apply_confirmation(self, confirmation: Confirmation) -> None:
        """Add a verdict's scores, replacing an earlier verdict on the same result."""
        key = (confirmation.node, confirmation.seq)
        with self._lock:
            old = self._confirmed.pop(key, None)
            if old is not None:
                self.confirmed_genuine.remove(old[0])
                self.confirmed_impostor.remove(old[1])
            if confirmation.row is None:
                return
            new = confirmed_scores(confirmation.truth, confirmation.row)
            self._confirmed[key] = new
            self.confirmed_genuine.add(new[0])
            self.confirmed_impostor.add(new[1])
            self.dirty = True

    def report(self) -> ThresholdReport:
        with self._lock:
            genuine = ScoreHistogram()
            genuine += self.gallery_genuine
            genuine += self.confirmed_genuine
            impostor = ScoreHistogram()
            impostor += self.gallery_impostor
            impostor += self.confirmed_impostor
            counts = {
                "gallery_genuine": self.gallery_genuine.total,
                "gallery_impostor": self.gallery_impostor.total,
                "confirmed_genuine": self.confirmed_genuine.total,
                "confirmed_impostor": self.confirmed_impostor.total,
                "live": self.live.total,
            }
            self.dirty = False
            return report(
                genuine,
                impostor,
                self.live,
                self.target_far,
                self.grid_step,
                ts=time.time(),
                gallery_version=self.gallery_version,
                model=self.model,
                counts=counts,
            )
