"""Enrolment quality checks (one clear face per photo, large, sharp, facing the camera, evenly lit) and
the enrolment photo's extra views.

Extra views (issue 23, docs/accuracy.md "Levers"): each accepted photo is also embedded as a camera
would see it at the small face sizes of ``GallerySettings.enrol_face_sizes`` (the photo shrunk with area
interpolation so the face is that many pixels, then aligned from the same landmarks, so the crop is
upsampled to the embedder's input as a small probe's is), each view flip-augmented when
``enrol_flip`` is on (the mean of the crop's and its mirror's embeddings). They are stored as extra
gallery vectors of the person, so a small probe meets an enrolled face that lost the same detail.

Each refusal names its reason (shown by ``facewire enroll``, the dashboard's library and the API).
The pose limits are the edge's gates (``edge_agent.quality`` explains them). The light limits sit
below every one of 645 lfw-dev press photos (grey-level spread of the aligned crop: lowest 25.4,
1st percentile 28.3; face brightness over the photo's: lowest 0.57, 1st percentile 0.67), so they
refuse only photos worse than any of those: a washed-out or foggy face, or a face in shadow
against a bright window or sky.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from classifier_service.gallery.store import NewEmbedding
from facewire.config import GallerySettings
from facewire.errors import ImageError
from facewire.faces import Face, FaceAnalyzer, pitch_offset, yaw_ratio
from facewire.images import decode_image
from facewire.models.align import align_face, crop_face
from facewire.models.embedder import l2_normalise


@dataclass(frozen=True)
class PhotoCheck:
    """The outcome for one photo: its embedding (and extra views by tag, e.g. ``s24``), or why it was rejected."""

    vector: np.ndarray | None
    reason: str
    quality: dict[str, float]
    views: tuple[tuple[str, np.ndarray], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.vector is not None

    def view_rows(self, source: str, origin: str) -> list[NewEmbedding]:
        """The extra views as gallery rows of the photo stored as ``source`` / ``origin``."""
        return [NewEmbedding(view_name(source, tag), view_name(origin, tag), vector) for tag, vector in self.views]


def view_name(base: str, tag: str) -> str:
    """The source, origin or file name of an extra view of ``base`` (``<base>#s24``)."""
    return f"{base}#{tag}"


def base_of_view(name: str) -> str:
    """``name`` without the ``#s<size>`` of an extra view (the photo's own name)."""
    head, mark, tag = name.rpartition("#")
    return head if mark and tag[:1] == "s" and tag[1:].isdigit() else name


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
    quality |= light_and_pose(image, largest)
    reason = light_or_pose_problem(quality, policy)  # first: a faded face also has few edges, but is not blurred
    if reason:
        return PhotoCheck(None, reason, quality)
    if quality.get("sharpness", 0.0) < policy.min_sharpness:
        reason = f"too blurred (sharpness {quality['sharpness']:.0f} < {policy.min_sharpness:g})"
        return PhotoCheck(None, reason, quality)
    vector, views = embed_views(analyzer, image, largest, policy.enrol_face_sizes, policy.enrol_flip)
    return PhotoCheck(vector, "", quality, views)


def view_crops(analyzer: FaceAnalyzer, image: np.ndarray, face: Face, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """The face as a camera would show it at each of ``sizes`` pixels (only sizes below the face's own):
    the photo shrunk by area interpolation, then aligned (or cropped) from the scaled landmarks."""
    crops = []
    side = analyzer.embedder.input_size
    for size in sizes:
        factor = size / face.size
        if factor >= 1.0:
            continue
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        landmarks = face.detection.landmarks
        if analyzer.embedder.needs_alignment and landmarks is not None:
            crops.append(align_face(small, landmarks * factor, side))
        else:
            x, y, w, h = face.detection.bbox
            crops.append(crop_face(small, (x * factor, y * factor, w * factor, h * factor), side, analyzer.crop_margin))
    return crops


def embed_views(
    analyzer: FaceAnalyzer, image: np.ndarray, face: Face, sizes: tuple[int, ...], flip: bool
) -> tuple[np.ndarray, tuple[tuple[str, np.ndarray], ...]]:
    """The face's embedding and its extra views ``s<size>`` (flip-augmented when ``flip``), in one batch."""
    crops = [face.crop, *view_crops(analyzer, image, face, sizes)]
    tags = ["", *(f"s{size}" for size in sizes if size < face.size)]
    if flip:
        crops += [np.ascontiguousarray(crop[:, ::-1]) for crop in crops]
    vectors = analyzer.embedder.embed(crops)
    if flip:
        vectors = l2_normalise(vectors[: len(tags)] + vectors[len(tags) :])
    face.embedding = vectors[0]
    return vectors[0], tuple(zip(tags[1:], vectors[1:], strict=True))


def light_and_pose(image: np.ndarray, face: Face) -> dict[str, float]:
    """Head turn and tilt from the landmarks, contrast of the aligned crop, face brightness over the photo's."""
    crop_grey = cv2.cvtColor(face.crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    x, y, w, h = (round(float(v)) for v in face.detection.bbox)
    inside = grey[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)]
    brightness = float(inside.mean()) / max(float(grey.mean()), 1.0) if inside.size else 1.0
    return {
        "yaw": round(yaw_ratio(face.detection.landmarks), 3),
        "pitch": round(pitch_offset(face.detection.landmarks), 3),
        "contrast": round(float(crop_grey.std()), 1),
        "brightness": round(brightness, 3),
    }


def light_or_pose_problem(quality: dict[str, float], policy: GallerySettings) -> str:
    """Why the face's pose or light makes a poor enrolment photo ('' when it does not)."""
    if abs(quality["yaw"]) > policy.max_yaw:
        return f"head turned away (yaw {quality['yaw']:+.2f}, most {policy.max_yaw:g})"
    if abs(quality["pitch"]) > policy.max_pitch:
        return f"head tilted up or down (pitch {quality['pitch']:+.2f}, most {policy.max_pitch:g})"
    if quality["contrast"] < policy.min_contrast:
        return f"low contrast (spread {quality['contrast']:.0f} < {policy.min_contrast:g}): washed out or foggy"
    if quality["brightness"] < policy.min_face_brightness:
        return (
            f"back-lit (face {quality['brightness']:.2f} x as bright as the photo, least"
            f" {policy.min_face_brightness:g}): light the face or move away from the window"
        )
    return ""


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
