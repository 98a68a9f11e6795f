"""Detect, align, score and embed faces: the one face pipeline shared by edge, gallery and tools."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from facewire.config import ModelSettings
from facewire.models.align import WARP_NAME, align_face, crop_face
from facewire.models.detector import Detection, Detector, HaarDetector, YuNetDetector
from facewire.models.embedder import Embedder, OnnxEmbedder
from facewire.models.registry import YUNET, package_file, resolve_embedder


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


FRONTAL_PITCH = 0.55  # nose height between eye line (0) and mouth line (1) of a frontal face (lfw-dev median)


def pitch_offset(landmarks: np.ndarray | None) -> float:
    """How far the nose sits from its frontal height between the eye and mouth lines (0 frontal, ± tilted)."""
    if landmarks is None:
        return 0.0
    eye_y = (landmarks[0][1] + landmarks[1][1]) / 2
    mouth_y = (landmarks[3][1] + landmarks[4][1]) / 2
    span = float(mouth_y - eye_y)
    if span <= 0:
        return 1.0  # mouth at or above the eyes: upside down or a landmark failure
    return float((landmarks[2][1] - eye_y) / span) - FRONTAL_PITCH


class FaceMasker(Protocol):
    id: str

    def mask(self, crop: np.ndarray) -> tuple[np.ndarray, bool]:
        """The crop with its background blacked out, and whether a face outline was found."""
        ...


class FaceAnalyzer:
    """Detector + aligner (or crop rule) + optional mask + quality + embedder, with a minimum face size.

    Crop rule (detectors without landmarks, or embedders that need no alignment): a square centred
    on the box, ``max(w, h) * (1 + 2 * crop_margin)`` pixels a side, resized to the embedder's input.
    With a masker, a face whose crop shows no face outline is dropped (counted in ``unmasked_dropped``).
    """

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        min_face: int,
        masker: FaceMasker | None = None,
        crop_margin: float = 0.1,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.min_face = min_face
        self.masker = masker
        self.crop_margin = crop_margin
        self.unmasked_dropped = 0

    @property
    def preparation(self) -> str:
        """Detector, mask and warp, e.g. ``yunet+none+cubic``: with the model id, what decides a photo's embedding.

        A cache of gallery embeddings keyed by model id alone goes stale when the detector, mask or warp changes.
        """
        return f"{self.detector.id}+{self.masker.id if self.masker is not None else 'none'}+{WARP_NAME}"

    def faces(self, frame: np.ndarray) -> list[Face]:
        """Every face at least ``min_face`` pixels, aligned and scored, not yet embedded."""
        found = (
            self.prepare(frame, d) for d in self.detector.detect(frame) if min(d.bbox[2], d.bbox[3]) >= self.min_face
        )
        return [face for face in found if face is not None]

    def prepare(self, frame: np.ndarray, detection: Detection) -> Face | None:
        """One detection aligned (or cropped), masked and scored, not yet embedded; None when the mask
        finds no face outline in it (counted in ``unmasked_dropped``)."""
        crop = self._crop(frame, detection)
        quality = {
            "size": round(min(detection.bbox[2], detection.bbox[3]), 1),
            "sharpness": round(sharpness(crop), 1),
            "yaw": round(yaw_ratio(detection.landmarks), 3),
        }
        if self.masker is not None:
            crop, masked = self.masker.mask(crop)
            if not masked:  # no face outline in the crop: a detector false positive, or unusable
                self.unmasked_dropped += 1
                return None
        return Face(detection, crop, quality)

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
        return crop_face(frame, detection.bbox, size, margin=self.crop_margin)


def create_embedder(settings: ModelSettings) -> OnnxEmbedder:
    """The embedder named in the settings (registry id or exported ONNX path), from its verified file."""
    spec, path = resolve_embedder(settings.embedder, settings.cache_dir)
    return OnnxEmbedder(path, spec, threads=settings.threads)


def create_detector(
    settings: ModelSettings, score_threshold: float, max_side: int = 640, min_face: int = 24
) -> Detector:
    """The detector named in the settings: yunet, haar or mediapipe (optional extra).

    The Haar cascade does not scan for faces smaller than ``min_face`` pixels (they would be dropped anyway).
    """
    cv2.setNumThreads(settings.threads)
    if settings.detector == "haar":
        return HaarDetector(max_side=max_side, min_size=min_face)
    if settings.detector == "mediapipe":
        from facewire.models.mediapipe_faces import MediaPipeDetector

        return MediaPipeDetector(score_threshold)
    assert YUNET.file is not None
    return YuNetDetector(str(package_file(YUNET.file)), score_threshold, max_side=max_side)


def create_masker(settings: ModelSettings) -> FaceMasker | None:
    """The background mask named in the settings: none, or facemesh (optional MediaPipe extra)."""
    if settings.mask == "none":
        return None
    from facewire.models.mediapipe_faces import FaceMeshMasker

    return FaceMeshMasker()


def create_analyzer(settings: ModelSettings, det_threshold: float, min_face: int) -> FaceAnalyzer:
    """Detector, mask and embedder of the settings, wired into one FaceAnalyzer."""
    masker = create_masker(settings)  # first: a missing extra fails before any model loads
    detector = create_detector(settings, det_threshold, min_face=min_face)
    embedder = create_embedder(settings)
    return FaceAnalyzer(detector, embedder, min_face, masker=masker, crop_margin=embedder.crop_margin)
