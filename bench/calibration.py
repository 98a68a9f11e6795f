"""Calibrating a default threshold on one half of the people and testing it on the other half.

Procedure (documented in docs/accuracy.md):

1. The people are split in two disjoint halves by the SHA-256 of their name (known and unknown
   people alike, so no person is in both halves): ``A`` and ``B``.
2. Calibration on a half: its known people are enrolled, its probes (its known people's other photos
   and its unknown people's photos) go through every protocol of the run; the impostor scores (best
   score of each unknown probe) of all protocols are pooled, and the threshold is the lowest one at
   which at most a ``far`` share of them would be accepted (``metrics.threshold_at_far``).
3. Test: that threshold is applied to the *other* half (its own gallery and probes): known correct
   and unknown rejected are reported per protocol, in both directions (A->B, B->A).
4. The shipped default (``EmbedderSpec.default_threshold``) is the mean of the two halves'
   thresholds, rounded up to 0.01. The test halves never choose anything.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import metrics
from bench.accuracy import Photo
from bench.protocol_eval import Decision, Scored, impostor_scores, summarise

CALIBRATION_FAR = 1e-3

ScoreFn = Callable[[list[Photo], Decision], list[Scored]]  # photos of a half -> one Scored per protocol


def half_of(person: str) -> str:
    """``A`` or ``B``: a fixed split of people by the SHA-256 of their name."""
    return "A" if hashlib.sha256(person.encode()).digest()[0] % 2 == 0 else "B"


def halves(photos: list[Photo]) -> dict[str, list[Photo]]:
    """The photos of each half's people."""
    out: dict[str, list[Photo]] = {"A": [], "B": []}
    for photo in photos:
        out[half_of(photo.person)].append(photo)
    return out


def calibrate(impostors: list[np.ndarray], far: float = CALIBRATION_FAR) -> float:
    """The threshold at ``far`` over the pooled impostor scores of several protocols."""
    pooled = np.concatenate(impostors) if impostors else np.zeros(0)
    return metrics.threshold_at_far(pooled, far)


def shipped_default(thresholds: list[float]) -> float:
    """The mean of the halves' calibrated thresholds, rounded up to 0.01."""
    return math.ceil(float(np.mean(thresholds)) * 100 - 1e-9) / 100


def cross_half(photos: list[Photo], score: ScoreFn, decision: Decision, names: list[str]) -> dict[str, Any]:
    """Calibrate on each half, test on the other; per protocol (``names``) test-half numbers."""
    split = halves(photos)
    scored = {half: score(group, decision) for half, group in split.items()}
    thresholds = {half: calibrate([impostor_scores(s) for s in scored[half]]) for half in split}
    directions = {}
    for cal, test in (("A", "B"), ("B", "A")):
        directions[f"{cal}->{test}"] = {
            "threshold": thresholds[cal],
            "protocols": {n: summarise(s, thresholds[cal]) for n, s in zip(names, scored[test], strict=True)},
        }
    return {
        "far": CALIBRATION_FAR,
        "people": {h: len({p.person for p in g}) for h, g in split.items()},
        "thresholds": thresholds,
        "shipped": shipped_default(list(thresholds.values())),
        "directions": directions,
    }


def ablation(photos: list[Photo], score: ScoreFn, decisions: list[Decision], names: list[str]) -> list[dict[str, Any]]:
    """Per decision and per calibration half: mean rank-1 and TAR@FAR1e-3 over protocols, and the
    known-correct / unknown-rejected at the half's own calibrated threshold (pooled over protocols)."""
    rows = []
    split = halves(photos)
    for decision in decisions:
        row: dict[str, Any] = {"decision": decision.name}
        for half, group in split.items():
            scored = score(group, decision)
            threshold = calibrate([impostor_scores(s) for s in scored])
            summaries = [summarise(s, threshold) for s in scored]
            row[half] = {
                "rank1": float(np.mean([s["rank1"] for s in summaries])),
                "tar_at_far_0.001": float(np.mean([s["tar_at_far_0.001"] for s in summaries])),
                "known_correct": float(np.mean([s["known_correct_at_threshold"] for s in summaries])),
                "unknown_rejected": float(np.mean([s["unknown_rejected_at_threshold"] for s in summaries])),
                "unidentifiable": int(sum(s["unidentifiable"] for s in summaries)),
                "threshold": threshold,
                "per_protocol_tar_at_far_0.001": {
                    n: s["tar_at_far_0.001"] for n, s in zip(names, summaries, strict=True)
                },
            }
        rows.append(row)
    return rows
