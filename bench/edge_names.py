"""Names on the clip: what an edge pipeline's messages come back as, judged like the classifier does.

The gallery is ``data/sample/enroll`` (one photo each of Lin-Manuel Miranda and Alex Lacamoire), the
threshold the embedder's calibrated default, and each face is judged on its track's best frames
(classifier_service.tracks.TrackMemory with the classifier's default settings). A face drawn in a
frame carries the newest result of its track so far, as in the annotated recording (edge_agent.overlay).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from classifier_service.matcher import Matcher
from classifier_service.tracks import TrackMemory
from facewire.config import ClassifierSettings
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.models.registry import default_threshold
from facewire.schema import FaceEmbedding

ROOT = Path(__file__).resolve().parent.parent
ENROL = ROOT / "data" / "sample" / "enroll"


def sample_matcher(analyzer: FaceAnalyzer) -> Matcher:
    """A matcher of the largest face of every photo under data/sample/enroll/<person>/."""
    vectors, labels = [], []
    for person in sorted(p for p in ENROL.iterdir() if p.is_dir()):
        for photo in sorted(person.iterdir()):
            face = max(analyzer.analyze(load_image(photo)), key=lambda f: f.size)
            assert face.embedding is not None
            vectors.append(face.embedding)
            labels.append(person.name)
    return Matcher(np.stack(vectors), labels, default_threshold(analyzer.embedder.model_id))


class NameLog:
    """Judges each frame's messages and records the name every drawn face carries."""

    def __init__(self, matcher: Matcher) -> None:
        settings = ClassifierSettings()
        self.matcher = matcher
        self.memory = TrackMemory(settings.track_frames, settings.track_gap_seconds)
        self._track_name: dict[int, str] = {}
        self.frames: dict[str, set[int]] = defaultdict(set)  # name -> frames it is drawn on
        self.tracks: dict[str, set[int]] = defaultdict(set)  # name -> tracks it was given to

    def frame(self, index: int, messages: list[FaceEmbedding], drawn_tracks: list[int]) -> None:
        """One processed frame: its messages, and the tracks of the faces drawn on it."""
        if messages:
            probes = np.stack([self.memory.probe(m) for m in messages])
            for message, match in zip(messages, self.matcher.match(probes), strict=True):
                self._track_name[message.track] = match.name
                self.tracks[match.name].add(message.track)
        for track in drawn_tracks:
            name = self._track_name.get(track)
            if name is not None:
                self.frames[name].add(index)

    def summary(self) -> dict[str, Any]:
        """{name: {"tracks": n, "frames": n}} for every name given, unknown included."""
        names = set(self.tracks) | set(self.frames)
        return {n: {"tracks": len(self.tracks[n]), "frames": len(self.frames[n])} for n in sorted(names)}
