"""Face extraction: the best aligned crops of every distinct face (one folder per track) in a video or folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_agent.quality import quality_score
from edge_agent.tracking import FaceTracker
from facewire.faces import Face, FaceAnalyzer
from facewire.models.align import crop_face
from facewire.sources import open_frames, sampled, source_fps


@dataclass
class Candidate:
    frame: int
    score: float
    face: Face
    original: np.ndarray | None = field(default=None, repr=False)


@dataclass
class TrackCrops:
    """The best crops kept so far for one track, never two near-duplicates."""

    limit: int
    duplicate_cosine: float
    kept: list[Candidate] = field(default_factory=list)

    def offer(self, candidate: Candidate) -> None:
        embedding = candidate.face.embedding
        assert embedding is not None
        for index, other in enumerate(self.kept):
            assert other.face.embedding is not None
            if float(np.dot(other.face.embedding, embedding)) >= self.duplicate_cosine:
                if candidate.score > other.score:
                    self.kept[index] = candidate
                return
        self.kept.append(candidate)
        self.kept.sort(key=lambda c: -c.score)
        del self.kept[self.limit :]


@dataclass(frozen=True)
class ExtractOptions:
    min_face: int = 40
    max_per_track: int = 5
    target_fps: float = 0.0
    duplicate_cosine: float = 0.95
    originals: bool = False
    min_track_frames: int = 2


def collect_tracks(
    analyzer: FaceAnalyzer, source: str, options: ExtractOptions, on_frame: Callable[[int], None] | None = None
) -> dict[int, tuple[int, TrackCrops]]:
    """Track id -> (frames seen, best crops). In a folder every photo stands alone: no track spans two photos."""
    tracker = FaceTracker(min_iou=0.3, max_age=1.0)
    tracks: dict[int, tuple[int, TrackCrops]] = {}
    fps = source_fps(source)
    for frame in sampled(open_frames(source), fps, options.target_fps):
        faces = [f for f in analyzer.faces(frame.image) if f.size >= options.min_face]
        analyzer.embed(faces)
        ids = tracker.update([f.detection.bbox for f in faces], frame.index / fps if fps else frame.index * 10.0)
        for face, track in zip(faces, ids, strict=True):
            seen, crops = tracks.get(track, (0, TrackCrops(options.max_per_track, options.duplicate_cosine)))
            original = crop_face(frame.image, face.detection.bbox, 224, margin=0.25) if options.originals else None
            crops.offer(Candidate(frame.index, quality_score(face), face, original))
            tracks[track] = (seen + 1, crops)
        if on_frame:
            on_frame(frame.index)
    return tracks


def merge_same_person(
    tracks: dict[int, tuple[int, TrackCrops]], min_cosine: float
) -> dict[int, tuple[int, TrackCrops]]:
    """Join tracks of one person that the tracker split (a face lost and found again): greedy, by the
    cosine of the tracks' mean embeddings, the longer track absorbing the shorter."""
    merged: dict[int, tuple[int, TrackCrops]] = {}
    means: dict[int, np.ndarray] = {}
    for track, (seen, crops) in sorted(tracks.items(), key=lambda item: -item[1][0]):
        vectors = np.stack([c.face.embedding for c in crops.kept if c.face.embedding is not None])
        mean = vectors.mean(axis=0)
        mean /= np.linalg.norm(mean)
        target = max(means, key=lambda t: float(means[t] @ mean), default=None)
        if target is not None and float(means[target] @ mean) >= min_cosine:
            total, into = merged[target]
            for candidate in crops.kept:
                into.offer(candidate)
            merged[target] = (total + seen, into)
            continue
        merged[track] = (seen, crops)
        means[track] = mean
    return merged


def write_tracks(tracks: dict[int, tuple[int, TrackCrops]], out_dir: Path, min_frames: int) -> list[dict[str, object]]:
    """One folder per kept track with its crops, plus an index.json describing them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = []
    for track, (seen, crops) in sorted(tracks.items()):
        if seen < min_frames:
            continue
        folder = out_dir / f"track_{track:04d}"
        folder.mkdir(exist_ok=True)
        files = []
        for candidate in crops.kept:
            name = f"frame_{candidate.frame:06d}.jpg"
            cv2.imwrite(str(folder / name), candidate.face.crop)
            if candidate.original is not None:
                cv2.imwrite(str(folder / f"original_{candidate.frame:06d}.jpg"), candidate.original)
            files.append({"file": name, "frame": candidate.frame, "score": round(candidate.score, 2)})
        index.append({"track": track, "folder": folder.name, "frames_seen": seen, "crops": files})
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index
