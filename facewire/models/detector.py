"""Face detectors behind one small interface: YuNet (5 landmarks, the default) and the Haar cascade.

MediaPipe face detection lives in ``facewire.models.mediapipe_faces`` (optional extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facewire.errors import ModelError


@dataclass(frozen=True)
class Detection:
    """A face box [x, y, w, h] in frame pixels, its score, and 5 landmarks (eyes, nose, mouth) if known."""

    bbox: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None


class Detector(Protocol):
    id: str

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """All faces in a BGR frame."""
        ...


class YuNetDetector:
    """OpenCV's FaceDetectorYN on the YuNet model, run at most ``max_side`` pixels on the long side.

    Two networks, each kept at the input size it last ran at: changing a network's input size costs
    about as much as a detection, and the edge alternates between full- and half-size frames
    (edge_agent.detection). A third size takes over the network used least recently.
    """

    def __init__(self, model_path: str, score_threshold: float, max_side: int = 640, nms: float = 0.3) -> None:
        self.id = "yunet"
        self.max_side = max_side
        self._create = lambda size: cv2.FaceDetectorYN.create(model_path, "", size, score_threshold, nms, 5000)
        try:
            self._nets = {(320, 320): self._create((320, 320))}
        except cv2.error as exc:
            raise ModelError(f"OpenCV cannot load detector {model_path}: {exc}") from exc

    def _net_for(self, size: tuple[int, int]) -> cv2.FaceDetectorYN:
        net = self._nets.pop(size, None)
        if net is None and len(self._nets) < 2:
            net = self._create(size)
        elif net is None:
            net = self._nets.pop(next(iter(self._nets)))  # the least recently used
            net.setInputSize(size)
        self._nets[size] = net  # the most recently used last
        return net

    def detect(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        image = frame if scale == 1.0 else cv2.resize(frame, (round(width * scale), round(height * scale)))
        size = (image.shape[1], image.shape[0])
        _, faces = self._net_for(size).detect(image)
        if faces is None:
            return []
        detections = []
        for row in faces:
            box = row[:4] / scale
            landmarks = row[4:14].reshape(5, 2) / scale
            detections.append(
                Detection((float(box[0]), float(box[1]), float(box[2]), float(box[3])), float(row[14]), landmarks)
            )
        return detections


HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class HaarDetector:
    """OpenCV's Haar cascade (the seed's detector): boxes only, no landmarks, no calibrated score.

    Every box gets score 1.0; the cascade's own threshold is ``min_neighbors``. Frames are
    scanned in grey, histogram-equalised, at most ``max_side`` pixels on the long side, for faces
    of at least ``min_size`` frame pixels.
    """

    def __init__(self, max_side: int = 640, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24):
        self.id = "haar"
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        path = Path(cv2.data.haarcascades) / HAAR_CASCADE  # type: ignore[attr-defined]
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelError(f"OpenCV cannot load the Haar cascade {path}")

    def detect(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        image = frame if scale == 1.0 else cv2.resize(frame, (round(width * scale), round(height * scale)))
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        boxes = self._cascade.detectMultiScale(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(max(1, round(self.min_size * scale)),) * 2,
        )
        return [
            Detection((float(x / scale), float(y / scale), float(w / scale), float(h / scale)), 1.0, None)
            for x, y, w, h in boxes
        ]
