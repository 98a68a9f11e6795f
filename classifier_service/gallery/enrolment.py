"""Enrolment quality checks: one clear, large enough, sharp face per photo, and valid person names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facewire.config import GallerySettings
from facewire.errors import ImageError
from facewire.faces import FaceAnalyzer
from facewire.images import decode_image


@dataclass(frozen=True)
class PhotoCheck:
    """The outcome for one photo: its embedding, or the reason it was rejected."""

    vector: np.ndarray | None
    reason: str
    quality: dict[str, float]

    @property
    def accepted(self) -> bool:
        return self.vector is not None


def check_photo(analyzer: FaceAnalyzer, image: np.ndarray, policy: GallerySettings) -> PhotoCheck:
    """Detect, check (one face, size, sharpness) and embed the face of one enrolment photo."""
    faces = analyzer.faces(image)
    if not faces:
        return PhotoCheck(None, "no face found", {})
    largest = max(faces, key=lambda face: face.size)
    quality = dict(largest.quality)
    others = [f for f in faces if f is not largest and f.size >= policy.second_face_ratio * largest.size]
    if others:
        return PhotoCheck(None, f"more than one face ({len(others) + 1})", quality)
    if largest.size < policy.min_face:
        return PhotoCheck(None, f"face too small ({largest.size:.0f} px < {policy.min_face})", quality)
    if quality.get("sharpness", 0.0) < policy.min_sharpness:
        reason = f"too blurred (sharpness {quality['sharpness']:.0f} < {policy.min_sharpness:g})"
        return PhotoCheck(None, reason, quality)
    analyzer.embed([largest])
    assert largest.embedding is not None
    return PhotoCheck(largest.embedding, "", quality)


def check_image_bytes(analyzer: FaceAnalyzer, data: bytes, policy: GallerySettings, label: str) -> PhotoCheck:
    """:func:`check_photo` on encoded image bytes (size and bomb checks first)."""
    try:
        image = decode_image(data, label)
    except ImageError as exc:
        return PhotoCheck(None, str(exc), {})
    return check_photo(analyzer, image, policy)


def near_duplicate(vector: np.ndarray, enrolled: np.ndarray | None, cosine: float) -> float | None:
    """The highest cosine to an enrolled embedding if it reaches ``cosine`` (a near-duplicate), else None."""
    if enrolled is None or len(enrolled) == 0:
        return None
    best = float(np.max(enrolled @ vector))
    return best if best >= cosine else None
