"""IoU tracking of face boxes across frames, when a track's face is worth embedding, and de-duplication."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter_w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    inter_h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    box: Box
    last_seen: float
    last_embedding: np.ndarray | None = field(default=None, repr=False)
    last_published: float = float("-inf")
    best_score: float = 0.0  # quality score of the best face embedded so far (0: never embedded)
    last_embedded: float = float("-inf")


class FaceTracker:
    """Greedy IoU association of boxes to tracks; a track not seen for ``max_age`` seconds ends.

    A device slower than one frame per ``max_age`` would otherwise end every track between two frames:
    a track seen in the previous frame survives to the next one, however long the gap.
    """

    def __init__(self, min_iou: float, max_age: float, first_id: int = 1) -> None:
        self.min_iou = min_iou
        self.max_age = max_age
        self._tracks: dict[int, _Track] = {}
        self._next_id = first_id
        self._previous_ts: float | None = None

    def update(self, boxes: list[Box], ts: float) -> list[int]:
        """Track ids for ``boxes`` (new ids for unmatched boxes)."""
        previous, self._previous_ts = self._previous_ts, ts
        self._tracks = {
            tid: t for tid, t in self._tracks.items() if ts - t.last_seen <= self.max_age or t.last_seen == previous
        }
        pairs = sorted(
            (
                (iou(box, track.box), index, tid)
                for index, box in enumerate(boxes)
                for tid, track in self._tracks.items()
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for overlap, index, tid in pairs:
            if overlap < self.min_iou:
                break
            if index not in assigned and tid not in used:
                assigned[index] = tid
                used.add(tid)
        ids = []
        for index, box in enumerate(boxes):
            found = assigned.get(index)
            if found is None:
                tid = self._next_id
                self._next_id += 1
                self._tracks[tid] = _Track(box, ts)
            else:
                tid = found
            self._tracks[tid].box = box
            self._tracks[tid].last_seen = ts
            ids.append(tid)
        return ids

    def wants_embedding(self, track_id: int, score: float, ts: float, better: float, refresh: float) -> bool:
        """True for a track's first face, a face scoring ``better`` times its best embedded one, or once
        ``refresh`` seconds have passed since its last embedding; the caller reports it with ``embedded``."""
        track = self._tracks[track_id]
        return track.best_score == 0.0 or score >= better * track.best_score or ts - track.last_embedded >= refresh

    def embedded(self, track_id: int, score: float, ts: float) -> None:
        """Record that the track's face of quality ``score`` was embedded at ``ts``."""
        track = self._tracks[track_id]
        track.best_score = max(track.best_score, score, 1e-9)
        track.last_embedded = ts

    def published_before(self, track_id: int) -> bool:
        """Whether the track has published an embedding (its faces have a name on the way)."""
        return self._tracks[track_id].last_embedding is not None

    def smallest_face(self, ts: float) -> float | None:
        """The smallest box side among the faces seen at ``ts``; None when no face was seen then."""
        sides = [min(t.box[2], t.box[3]) for t in self._tracks.values() if t.last_seen == ts]
        return min(sides, default=None)

    def end_all(self) -> None:
        """End every track (a new scene: the next still image of a folder shares no face with the last)."""
        self._tracks.clear()

    def should_publish(
        self, track_id: int, embedding: np.ndarray, ts: float, max_cosine: float, refresh: float
    ) -> bool:
        """True unless the track's last published embedding is at least ``max_cosine`` similar and recent."""
        track = self._tracks[track_id]
        last = track.last_embedding
        if last is not None and ts - track.last_published < refresh and float(np.dot(last, embedding)) >= max_cosine:
            return False
        track.last_embedding = embedding
        track.last_published = ts
        return True

    @property
    def active(self) -> int:
        return len(self._tracks)
