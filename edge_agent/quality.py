"""Which faces are worth embedding: gates before the embedder and the score that ranks a track's faces.

The gates drop faces the classifier could not name anyway, before they cost an embedding (SFace is
~17 ms per face on one x86 core, ~69 ms on a Raspberry Pi 4). Their defaults are set from lfw-dev, a
set of press photos that SFace names 99 % right, not from the bundled clip:

- ``min_face`` (40 px): the smallest face side embedded, as before.
- ``min_sharpness`` (20): variance of the Laplacian of the 112-px aligned crop. 99.5 % of 600 lfw-dev
  photos score above 21.6 (median 133); below 20 the crop is motion-blurred, out of focus or too dark
  to show edges.
- ``max_yaw`` (0.6): nose offset from the eye midpoint over the eye distance (0 frontal). All but
  2 of 600 lfw-dev photos lie within ±0.6; beyond it the face is turned well past three-quarter view and
  the eye distance, which alignment relies on, collapses (ratios of 1 to 14 in profile).
- ``max_pitch`` (0.25): how far the nose sits from its frontal height between the eye line and the
  mouth line (0.55 of the way down, the lfw-dev median; all 600 photos lie within 0.43-0.69). Beyond
  ±0.25 the head is tilted far up or down.
"""

from __future__ import annotations

from dataclasses import dataclass

from facewire.config import EdgeSettings
from facewire.faces import Face, pitch_offset, yaw_ratio
from facewire.models.detector import Detection

REASONS = ("small", "yaw", "pitch", "blurred", "unmasked")


@dataclass(frozen=True)
class Gates:
    """The limits a face must meet before it is embedded (see the module docstring for the defaults)."""

    min_face: int
    min_sharpness: float
    max_yaw: float
    max_pitch: float

    @classmethod
    def of(cls, settings: EdgeSettings) -> Gates:
        return cls(settings.min_face, settings.min_sharpness, settings.max_yaw, settings.max_pitch)

    def detection(self, detection: Detection) -> str | None:
        """Why a detection is not worth aligning (small, yaw, pitch), or None; from its box and landmarks."""
        if min(detection.bbox[2], detection.bbox[3]) < self.min_face:
            return "small"
        if abs(yaw_ratio(detection.landmarks)) > self.max_yaw:
            return "yaw"
        if abs(pitch_offset(detection.landmarks)) > self.max_pitch:
            return "pitch"
        return None

    def face(self, face: Face) -> str | None:
        """Why an aligned face is not worth embedding (blurred), or None."""
        return "blurred" if face.quality["sharpness"] < self.min_sharpness else None


def quality_score(face: Face) -> float:
    """Bigger, sharper, more frontal faces score higher: the face side in pixels, down to half of it for
    a blurred crop and to a quarter for a face turned half away."""
    size = face.quality["size"]
    sharp = min(face.quality["sharpness"], 1000.0) / 1000.0
    frontal = max(0.0, 1.0 - 2.0 * abs(face.quality["yaw"]))
    return size * (0.5 + 0.5 * sharp) * (0.25 + 0.75 * frontal)
