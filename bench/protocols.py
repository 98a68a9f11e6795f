"""Harder accuracy protocols: fewer enrolment photos and degraded probes (small, blurred, JPEG-compressed).

A protocol enrols the first ``enroll_per_person`` photos (by name) of each known person, clean, and
degrades every probe (the other known photos and every unknown photo) the way a camera would:

1. ``probe_scale`` S < 1: the photo is shrunk by S (area interpolation, as a sensor would) and pasted
   into a grey 640x360 frame at a position derived from the photo's SHA-256 (deterministic), so the
   detector sees a small face in a large frame. An LFW face of ~105 px becomes ~37 px at S=0.35
   and ~23 px at S=0.22.
2. ``blur`` K > 0: Gaussian blur with a K x K kernel (K odd) on the (pasted) image.
3. ``jpeg_quality`` Q > 0: JPEG re-encoding at quality Q.

Each degraded probe is a new image: its cache key is the SHA-256 of (file SHA-256, protocol tag).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

FRAME_SIZE = (640, 360)  # width, height: a 360p camera frame
BACKGROUND = 118


@dataclass(frozen=True)
class Protocol:
    """How photos are enrolled and how probes are degraded."""

    enroll_per_person: int = 5
    probe_scale: float = 1.0
    blur: int = 0
    jpeg_quality: int = 0

    def __post_init__(self) -> None:
        if self.enroll_per_person < 1:
            raise ValueError("enroll_per_person must be >= 1")
        if not 0.05 <= self.probe_scale <= 1.0:
            raise ValueError("probe_scale must be in [0.05, 1]")
        if self.blur < 0 or (self.blur and self.blur % 2 == 0):
            raise ValueError("blur must be 0 or an odd kernel size")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [0, 100]")

    @property
    def degradation(self) -> str:
        """The probe degradation alone (shared by protocols that differ only in enrolment), e.g. ``s0.35``."""
        parts = []
        if self.probe_scale < 1.0:
            parts.append(f"s{self.probe_scale:g}")
        if self.blur:
            parts.append(f"blur{self.blur}")
        if self.jpeg_quality:
            parts.append(f"q{self.jpeg_quality}")
        return "-".join(parts) or "clean"

    @property
    def name(self) -> str:
        return f"enrol{self.enroll_per_person}-{self.degradation}"


# ``--protocol all``: the protocols, each with 5 and with 1 enrolment photo where it sets a target.
ALL = (
    Protocol(5),
    Protocol(1),
    Protocol(5, probe_scale=0.35),
    Protocol(1, probe_scale=0.35),
    Protocol(5, probe_scale=0.22),
    Protocol(1, probe_scale=0.22),
    Protocol(5, blur=5),
    Protocol(5, jpeg_quality=20),
)


# ``--protocol small``: issue 23's frontier (one or five photos; probes clean, ~37 px, ~23 px).
SMALL = tuple(p for p in ALL if not p.blur and not p.jpeg_quality)


def paste_position(key: str, inner: tuple[int, int], frame: tuple[int, int] = FRAME_SIZE) -> tuple[int, int]:
    """(x, y) of the top-left corner of an ``inner`` (w, h) image in ``frame``, derived from ``key``."""
    digest = hashlib.sha256(key.encode()).digest()
    free_x, free_y = frame[0] - inner[0], frame[1] - inner[1]
    x = int.from_bytes(digest[:4], "big") % (free_x + 1)
    y = int.from_bytes(digest[4:8], "big") % (free_y + 1)
    return x, y


def shrink_into_frame(image: np.ndarray, scale: float, key: str) -> np.ndarray:
    """``image`` shrunk by ``scale`` and pasted into a grey 640x360 frame at a position from ``key``."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    frame = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), BACKGROUND, dtype=np.uint8)
    x, y = paste_position(key, size)
    frame[y : y + size[1], x : x + size[0]] = small[: FRAME_SIZE[1], : FRAME_SIZE[0]]
    return frame


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` re-encoded as JPEG at ``quality`` and decoded again."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def degrade(image: np.ndarray, protocol: Protocol, key: str) -> np.ndarray:
    """The probe as the protocol's camera would see it (``key``: the photo's SHA-256, for the position)."""
    out = image
    if protocol.probe_scale < 1.0:
        out = shrink_into_frame(out, protocol.probe_scale, key)
    if protocol.blur:
        out = cv2.GaussianBlur(out, (protocol.blur, protocol.blur), 0)
    if protocol.jpeg_quality:
        out = jpeg(out, protocol.jpeg_quality)
    return out


def probe_key(sha256: str, degradation: str, extra: str = "") -> str:
    """Cache key of a degraded probe: SHA-256 of (file SHA-256, degradation[, pipeline detail])."""
    return hashlib.sha256(f"{sha256}\0{degradation}\0{extra}".encode()).hexdigest()
