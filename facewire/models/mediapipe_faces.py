"""MediaPipe (optional extra): face detection and the Face Mesh background mask (the seed's segmentation).

``mediapipe==0.10.21`` is the last release with ``mediapipe.solutions``. It is
imported only when ``--detector mediapipe`` or ``--mask facemesh`` is chosen;
without it those options fail with an install hint (ModelError), not a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

from facewire.errors import ModelError
from facewire.models.align import TEMPLATE_112
from facewire.models.detector import Detection

MEDIAPIPE_VERSION = "0.10.21"
INSTALL_HINT = (
    f"pip install 'facewire[mediapipe]' && pip install --no-deps mediapipe=={MEDIAPIPE_VERSION} "
    "(see docs/models.md: --no-deps keeps opencv-python-headless the only cv2)"
)
# Mouth-corner distance over eye distance on the 112x112 alignment template.
_MOUTH_OVER_EYES = float(
    np.linalg.norm(TEMPLATE_112[4] - TEMPLATE_112[3]) / np.linalg.norm(TEMPLATE_112[1] - TEMPLATE_112[0])
)


def require_mediapipe(option: str) -> Any:
    """The ``mediapipe`` module with its legacy ``solutions``; ModelError with an install hint otherwise."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only
    try:
        import mediapipe

        solutions = mediapipe.solutions
        solutions.face_detection, solutions.face_mesh  # noqa: B018  (fail here, not at first use)
    except Exception as exc:  # ImportError, or protobuf/numpy ABI errors raised while importing
        raise ModelError(
            f"{option} needs MediaPipe {MEDIAPIPE_VERSION} with mediapipe.solutions, which is not usable here "
            f"({type(exc).__name__}: {exc}). Install it: {INSTALL_HINT}"
        ) from exc
    return mediapipe


def mediapipe_available() -> bool:
    """True when ``require_mediapipe`` would succeed."""
    try:
        require_mediapipe("mediapipe")
    except ModelError:
        return False
    return True


def five_landmarks(eyes_nose_mouth: np.ndarray) -> np.ndarray:
    """YuNet-order 5 points from MediaPipe's right eye, left eye, nose tip and mouth centre.

    MediaPipe gives the mouth centre only; the corners are placed on the eye axis direction,
    either side of it, as far apart as on the alignment template (0.83 x the eye distance).
    """
    right_eye, left_eye, nose, mouth = eyes_nose_mouth[:4]
    half = (left_eye - right_eye) * _MOUTH_OVER_EYES / 2
    return np.array([right_eye, left_eye, nose, mouth - half, mouth + half], dtype=np.float32)


class MediaPipeDetector:
    """MediaPipe face detection (``model_selection`` 1: full range, faces up to ~5 m; 0: short range, ~2 m)."""

    def __init__(self, score_threshold: float, model_selection: int = 1) -> None:
        mediapipe = require_mediapipe("--detector mediapipe")
        self.id = "mediapipe"
        self._detector = mediapipe.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=score_threshold
        )

    def detect(self, frame: np.ndarray) -> list[Detection]:
        height, width = frame.shape[:2]
        result = self._detector.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        detections = []
        for found in result.detections or []:
            box = found.location_data.relative_bounding_box
            x, y = max(0.0, box.xmin * width), max(0.0, box.ymin * height)
            w, h = min(box.width * width, width - x), min(box.height * height, height - y)
            if w <= 1 or h <= 1:
                continue
            points = np.array([[p.x * width, p.y * height] for p in found.location_data.relative_keypoints])
            landmarks = five_landmarks(points) if len(points) >= 4 else None
            detections.append(Detection((float(x), float(y), float(w), float(h)), float(found.score[0]), landmarks))
        return detections

    def close(self) -> None:
        self._detector.close()


class FaceMeshMasker:
    """Blacks out everything outside the face oval that MediaPipe Face Mesh finds in a face crop.

    A crop where Face Mesh finds no face is returned unchanged and reported as not masked.
    """

    id = "facemesh"

    def __init__(self, min_confidence: float = 0.5) -> None:
        mediapipe = require_mediapipe("--mask facemesh")
        face_mesh = mediapipe.solutions.face_mesh
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=min_confidence
        )
        self._oval = sorted({index for edge in face_mesh.FACEMESH_FACE_OVAL for index in edge})

    def outline(self, crop: np.ndarray) -> np.ndarray | None:
        """The face-oval polygon (convex hull of the oval landmarks) in crop pixels, or None."""
        height, width = crop.shape[:2]
        result = self._mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        landmarks = result.multi_face_landmarks[0].landmark
        points = np.array([[landmarks[i].x * width, landmarks[i].y * height] for i in self._oval], dtype=np.float32)
        return cv2.convexHull(np.round(points).astype(np.int32))

    def mask(self, crop: np.ndarray) -> tuple[np.ndarray, bool]:
        """(crop with the background black, True) or (crop unchanged, False) when no face mesh is found."""
        polygon = self.outline(crop)
        if polygon is None:
            return crop, False
        keep = np.zeros(crop.shape[:2], dtype=np.uint8)
        cv2.fillConvexPoly(keep, polygon, (255,))
        return cv2.bitwise_and(crop, crop, mask=keep), True

    def close(self) -> None:
        self._mesh.close()
