"""The peer: the ``face_recognition`` library (dlib HOG detector + dlib ResNet 128-d encoder), optional.

Install (the ``peer`` extra; ``face_recognition`` itself without its dependencies, which would build
dlib from source): ``pip install dlib-bin face_recognition_models "setuptools<81"`` then
``pip install --no-deps face_recognition``.
Used with its documented defaults: ``face_locations(image)`` (HOG, upsample once), ``face_encodings``
of those locations (1 jitter, 5-point landmarks), a match when the Euclidean distance is at most the
default tolerance 0.6. Scores given to the metrics are ``-distance`` (higher = more alike).
"""

from __future__ import annotations

import warnings
from types import ModuleType

import cv2
import numpy as np

from bench.protocol_embed import Embedded

PEER_ID = "face_recognition-hog"
TOLERANCE = 0.6
INSTALL = 'pip install dlib-bin face_recognition_models "setuptools<81" && pip install --no-deps face_recognition'


def load() -> ModuleType | None:
    """The face_recognition module, or None when it (or its models) is not installed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models imports the deprecated pkg_resources
            import face_recognition
    except (ImportError, SystemExit):  # it calls quit() when face_recognition_models is missing
        return None
    return face_recognition


def missing_reason() -> str | None:
    """Why the peer cannot run here, or None when it can."""
    return None if load() is not None else f"face_recognition is not installed ({INSTALL})"


class PeerEmbedder:
    """The largest face of an image, as face_recognition finds and encodes it."""

    def __init__(self) -> None:
        module = load()
        if module is None:
            raise RuntimeError(missing_reason())
        self.fr = module

    def __call__(self, image_bgr: np.ndarray) -> Embedded:
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        locations = self.fr.face_locations(rgb)
        if not locations:
            return Embedded(None)
        top, right, bottom, left = max(locations, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
        vector = self.fr.face_encodings(rgb, [(top, right, bottom, left)])[0].astype(np.float32)
        size = float(min(bottom - top, right - left))
        return Embedded({"plain": vector}, np.array([size, 0.0, 0.0, 1.0], dtype=np.float32))


def similarity(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """-Euclidean distance of every probe (rows) to every gallery vector (columns)."""
    squared = (probes**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :] - 2 * probes @ gallery.T
    return -np.sqrt(np.maximum(squared, 0.0))
