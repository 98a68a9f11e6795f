"""Cheaper detection where it pays: a half-size frame while every face in view is large.

Detection cost grows with the pixels scanned (YuNet: ~4x cheaper at half size). A face at least twice
``min_face`` stays at least ``min_face`` / 2 = 20 px at half size with the default, where YuNet still
finds it with its landmarks. A new face may enter smaller than that, so a full-size scan runs at least
every ``full_scan_seconds``, and whenever the last frame had no face or a small one.
"""

from __future__ import annotations

import cv2
import numpy as np

from facewire.models.detector import Detection, Detector

DETECTOR_SIDE = 640  # the long side detectors work at (facewire.faces.create_detector's max_side)


def scaled_back(detection: Detection, factor: float) -> Detection:
    """A detection found on a frame resized by 1 / ``factor``, in the original frame's pixels."""
    x, y, w, h = detection.bbox
    landmarks = None if detection.landmarks is None else detection.landmarks * factor
    return Detection((x * factor, y * factor, w * factor, h * factor), detection.score, landmarks)


class AdaptiveDetection:
    """Runs a detector at full size, or at half its working size while every tracked face is large."""

    def __init__(self, detector: Detector, min_face: int, full_scan_seconds: float) -> None:
        self.detector = detector
        self.min_face = min_face
        self.full_scan_seconds = full_scan_seconds
        self.half_size_frames = 0
        self._last_full = float("-inf")

    def detect(self, image: np.ndarray, ts: float, smallest_face: float | None) -> list[Detection]:
        """Faces in ``image``; ``smallest_face`` is the smallest face side of the previous frame (None: none)."""
        large = smallest_face is not None and smallest_face >= 2 * self.min_face
        if not large or ts - self._last_full >= self.full_scan_seconds:
            self._last_full = ts
            return self.detector.detect(image)
        height, width = image.shape[:2]
        factor = 2.0 * max(1.0, max(height, width) / DETECTOR_SIDE)
        small = cv2.resize(image, (round(width / factor), round(height / factor)), interpolation=cv2.INTER_AREA)
        self.half_size_frames += 1
        return [scaled_back(d, factor) for d in self.detector.detect(small)]
