"""Detect, align, score and embed faces: the one face pipeline shared by edge, gallery and tools."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from facewire.config import ModelSettings
from facewire.models.align import align_face, crop_face
from facewire.models.detector import Detection, Detector, YuNetDetector
from facewire.models.embedder import Embedder, OnnxEmbedder
from facewire.models.registry import DETECTORS, embedder_spec, folded_model, package_file


@dataclass
class Face:
    """One detected face, its aligned crop, quality measures and (once embedded) its vector."""

    detection: Detection
    crop: np.ndarray = field(repr=False)
    quality: dict[str, float]
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> float:
        return min(self.detection.bbox[2], self.detection.bbox[3])


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: low means blurred."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def yaw_ratio(landmarks: np.ndarray | None) -> float:
    """Nose offset from the eye midpoint over the eye distance: ~0 frontal, ~±0.5 in profile."""
    if landmarks is None:
        return 0.0
    eye_mid = (landmarks[0] + landmarks[1]) / 2
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0])) or 1.0
    return float((landmarks[2][0] - eye_mid[0]) / eye_distance)


class FaceAnalyzer:
    """Detector + aligner + quality + embedder with a minimum face size."""

    def __init__(self, detector: Detector, embedder: Embedder, min_face: int) -> None:
        self.detector = detector
        self.embedder = embedder
        self.min_face = min_face

    def faces(self, frame: np.ndarray) -> list[Face]:
        """Every face at least ``min_face`` pixels, aligned and scored, not yet embedded."""
        faces = []
        for detection in self.detector.detect(frame):
            if min(detection.bbox[2], detection.bbox[3]) < self.min_face:
                continue
            crop = self._crop(frame, detection)
            quality = {
                "size": round(min(detection.bbox[2], detection.bbox[3]), 1),
                "sharpness": round(sharpness(crop), 1),
                "yaw": round(yaw_ratio(detection.landmarks), 3),
            }
            faces.append(Face(detection, crop, quality))
        return faces

    def embed(self, faces: Sequence[Face]) -> None:
        """Fill in the embedding of every face, in one batch."""
        vectors = self.embedder.embed([face.crop for face in faces])
        for face, vector in zip(faces, vectors, strict=True):
            face.embedding = vector

    def analyze(self, frame: np.ndarray) -> list[Face]:
        faces = self.faces(frame)
        self.embed(faces)
        return faces

    def _crop(self, frame: np.ndarray, detection: Detection) -> np.ndarray:
        size = self.embedder.input_size
        if self.embedder.needs_alignment and detection.landmarks is not None:
            try:
                return align_face(frame, detection.landmarks, size)
            except ValueError:
                pass
        return crop_face(frame, detection.bbox, size)


def create_embedder(settings: ModelSettings) -> Embedder:
    """The embedder named in the settings, loaded from its verified, cached file."""
    spec = embedder_spec(settings.embedder)
    path = folded_model(spec.file, settings.cache_dir, dynamic_batch=True)
    return OnnxEmbedder(path, spec, threads=settings.threads)


def create_detector(settings: ModelSettings, score_threshold: float, max_side: int = 640) -> Detector:
    """The detector named in the settings."""
    cv2.setNumThreads(settings.threads)
    spec = DETECTORS[settings.detector]
    return YuNetDetector(str(package_file(spec.file)), score_threshold, max_side=max_side)


def create_analyzer(settings: ModelSettings, det_threshold: float, min_face: int) -> FaceAnalyzer:
    return FaceAnalyzer(create_detector(settings, det_threshold), create_embedder(settings), min_face)
