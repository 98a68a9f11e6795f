"""Enrolment from a camera (or any video source): keep good, varied frames of one face, say why others are refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from classifier_service.gallery.enrolment import check_photo
from facewire.config import GallerySettings
from facewire.faces import FaceAnalyzer
from facewire.sources import Frame


@dataclass(frozen=True)
class FrameVerdict:
    frame: int
    accepted: bool
    reason: str


@dataclass
class CameraEnrolment:
    """Takes frames until ``wanted`` good ones are kept; each new one must differ from those kept
    (cosine below ``max_similarity``), so the gallery sees the face from more than one angle, yet be
    the same person as the first (cosine to it at least ``min_same``)."""

    analyzer: FaceAnalyzer
    policy: GallerySettings
    wanted: int = 5
    max_similarity: float = 0.92
    min_same: float = 0.35
    kept: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.kept) >= self.wanted

    def offer(self, frame: Frame) -> FrameVerdict:
        """Check one frame: one face, big and sharp enough, and not too like a frame already kept."""
        check = check_photo(self.analyzer, frame.image, self.policy)
        if check.vector is None:
            return FrameVerdict(frame.index, False, check.reason)
        if self.kept:
            if float(self.kept[0][1] @ check.vector) < self.min_same:
                return FrameVerdict(frame.index, False, "a different face from the first one kept")
            closest = max(float(vector @ check.vector) for _i, vector in self.kept)
            if closest >= self.max_similarity:
                return FrameVerdict(frame.index, False, f"not varied enough (cosine {closest:.2f}): turn a little")
        self.kept.append((frame.index, check.vector))
        return FrameVerdict(frame.index, True, f"kept {len(self.kept)}/{self.wanted}")


def run_camera_enrolment(
    enrolment: CameraEnrolment, frames: Iterator[Frame], on_verdict: Callable[[FrameVerdict], None], max_frames: int
) -> list[tuple[int, np.ndarray]]:
    """Offer frames until enough are kept or ``max_frames`` were seen; return the kept (frame, vector) pairs."""
    for seen, frame in enumerate(frames, start=1):
        on_verdict(enrolment.offer(frame))
        if enrolment.done or seen >= max_frames:
            break
    return enrolment.kept
