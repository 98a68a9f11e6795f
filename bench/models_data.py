"""Inputs of the model benchmark: real LFW face crops (aligned for SFace, seed-style for CLIP), clip frames,
and rank-1 identification from embeddings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facewire.config import ModelSettings
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire.models.align import crop_face
from facewire.models.mediapipe_faces import FaceMeshMasker, mediapipe_available
from facewire_console.demo import SAMPLE_DIR
from harness.processes import shared_data_dir

ENROLLED = 5
CLIP_VIDEO = SAMPLE_DIR / "short_hamilton_clip.mp4"


@dataclass
class Crops:
    """One face per photo: its person, its 112x112 aligned crop and its 224x224 seed-style crop."""

    labels: list[str] = field(default_factory=list)
    aligned: list[np.ndarray] = field(default_factory=list)
    clip: list[np.ndarray] = field(default_factory=list)
    unmasked: list[np.ndarray] = field(default_factory=list)


def shared_lfw() -> Path:
    found = shared_data_dir()
    if found is None or not (found / "lfw-dev/known").is_dir():
        raise SystemExit("../shared/data/lfw-dev not found (set FACEWIRE_SHARED_DATA)")
    return found / "lfw-dev/known"


def collect_crops(known: Path, people: int) -> Crops:
    """YuNet's largest face of every photo of the first ``people`` people: aligned, and cropped (+ Face Mesh mask)."""
    analyzer = create_analyzer(ModelSettings(), det_threshold=0.6, min_face=20)
    masker = FaceMeshMasker() if mediapipe_available() else None
    crops = Crops()
    for person in sorted(p for p in known.iterdir() if p.is_dir())[:people]:
        for photo in sorted(person.iterdir()):
            image = load_image(photo)
            faces = analyzer.faces(image)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.size)
            seed_crop = crop_face(image, face.detection.bbox, 224, margin=0.2)
            crops.unmasked.append(seed_crop)
            if masker is not None:
                seed_crop, _masked = masker.mask(seed_crop)
            crops.labels.append(person.name)
            crops.aligned.append(face.crop)
            crops.clip.append(seed_crop)
    return crops


def identification(variant: str, vectors: np.ndarray, crops: Crops) -> dict[str, object]:
    """Rank-1 on LFW-dev: each person's first 5 photos enrolled, every other photo a probe."""
    enrolled: list[int] = []
    probes: list[int] = []
    seen: dict[str, int] = {}
    for index, label in enumerate(crops.labels):
        seen[label] = seen.get(label, 0) + 1
        (enrolled if seen[label] <= ENROLLED else probes).append(index)
    gallery = vectors[enrolled]
    scores = vectors[probes] @ gallery.T
    best = scores.argmax(axis=1)
    names = [crops.labels[enrolled[i]] for i in best]
    correct = sum(name == crops.labels[p] for name, p in zip(names, probes, strict=True))
    return {
        "variant": variant,
        "enrolled": len(enrolled),
        "probes": len(probes),
        "rank1": round(correct / len(probes), 4),
        "names": names,
    }


def video_frames(count: int) -> list[np.ndarray]:
    """The first ``count`` frames of the bundled clip."""
    capture = cv2.VideoCapture(str(CLIP_VIDEO))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
