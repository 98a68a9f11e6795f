"""Per-track decisions for video, simulated from still photos (bench only; the classifier has no track state yet).

A simulated track is one person walking towards a camera: frame i shows a probe photo at the scale
``TRACK_SCALES[i]`` (~23, ~23, ~37 px faces). A known person's track uses consecutive probe photos of
that person (different photos, so different pose and light, as frames of a real walk would not be
identical); an unknown person has one photo, so their track shows that photo at each scale. Tracks are
judged three ways: every frame on its own (counted per frame: what a per-frame classifier reports), the
best-quality frame (largest face), and the mean of the ``TOP`` best-quality frames' embeddings
(re-normalised): the aggregation the issue asks for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import metrics
from bench.accuracy import Photo
from bench.protocol_embed import Embedded
from bench.protocol_systems import enrolled_and_probes

TRACK_SCALES = ("s0.22", "s0.22", "s0.35")
TOP = 2


def tracks(probes: list[Photo]) -> list[list[tuple[Photo, str]]]:
    """Frames (photo, degradation) of each simulated track."""
    by_person: dict[str, list[Photo]] = {}
    for photo in probes:
        by_person.setdefault(photo.person, []).append(photo)
    out = []
    for group in by_person.values():
        ordered = sorted(group, key=lambda p: p.path.name)
        if not ordered[0].known:
            out.append([(ordered[0], scale) for scale in TRACK_SCALES])
            continue
        for start in range(0, len(ordered) - len(TRACK_SCALES) + 1, len(TRACK_SCALES)):
            chunk = ordered[start : start + len(TRACK_SCALES)]
            out.append(list(zip(chunk, TRACK_SCALES, strict=True)))
    return out


def judge(vector: np.ndarray | None, gallery: np.ndarray, labels: list[str]) -> tuple[str, float]:
    if vector is None:
        return "", float("nan")
    scores = gallery @ vector
    best = int(np.argmax(scores))
    return labels[best], float(scores[best])


def track_vectors(frames: list[Embedded]) -> dict[str, np.ndarray | None]:
    """The embedding each way of deciding would use for the track."""
    seen = [(float(e.quality[0]) if e.quality is not None else 0.0, e.vectors["plain"]) for e in frames if e.vectors]
    if not seen:
        return {"best frame": None, f"top-{TOP} mean": None}
    ranked = [v for _, v in sorted(seen, key=lambda item: -item[0])]
    mean = np.mean(ranked[:TOP], axis=0)
    return {"best frame": ranked[0], f"top-{TOP} mean": mean / np.linalg.norm(mean)}


def run(
    photos: list[Photo],
    embedded: dict[str, dict[str, Embedded]],
    threshold: float,
    enroll: int = 1,
    max_probes: int | None = None,
) -> dict:
    """Track-level rank-1, TAR@FAR1e-3 and known correct / unknown rejected at ``threshold``, per way."""
    enrolled, probes = enrolled_and_probes(photos, enroll, max_probes)
    rows = [(p.person, e.vectors["plain"]) for p in enrolled if (e := embedded["clean"][p.sha256]).vectors]
    gallery, labels = np.stack([v for _, v in rows]), [name for name, _ in rows]
    all_tracks = tracks(probes)
    ways: dict[str, Any] = {}
    for way in ("each frame", "best frame", f"top-{TOP} mean"):
        names, scores, known = [], [], []
        for track in all_tracks:
            frames = [embedded[degradation][photo.sha256] for photo, degradation in track]
            if way == "each frame":
                vectors = [e.vectors["plain"] if e.vectors else None for e in frames]
            else:
                vectors = [track_vectors(frames)[way]]
            for vector in vectors:
                name, score = judge(vector, gallery, labels)
                names.append(name == track[0][0].person)
                scores.append(score)
                known.append(track[0][0].known)
        right, value, is_known = np.array(names), np.array(scores), np.array(known)
        impostors = value[~is_known]
        at = metrics.threshold_at_far(impostors[~np.isnan(impostors)], 1e-3)
        ways[way] = {
            "rank1": metrics.rank1_accuracy(right[is_known]),
            "tar_at_far_0.001": metrics.true_accept_rate(right[is_known], value[is_known], at),
            "known_correct_at_threshold": metrics.true_accept_rate(right[is_known], value[is_known], threshold),
            "unknown_rejected_at_threshold": 1 - metrics.false_accept_rate(impostors, threshold),
        }
    counts = {"known_tracks": sum(t[0][0].known for t in all_tracks), "unknown_tracks": 0}
    counts["unknown_tracks"] = len(all_tracks) - counts["known_tracks"]
    return {"scales": list(TRACK_SCALES), "enroll": enroll, "threshold": threshold, **counts, "ways": ways}
