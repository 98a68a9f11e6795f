"""The edge agent's pure core: a frame in, the FaceEmbedding messages to publish out.

Track first, embed later: every detected face joins its IoU track before anything else; faces the
classifier could not name are gated out (edge_agent.quality); a track's face is embedded when the
track is new, when a clearly better face of it appears, and otherwise every ``refresh_seconds``.
So the embedder, the dearest stage, runs a few times per track instead of once per face and frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.detection import AdaptiveDetection
from edge_agent.quality import REASONS, Gates, quality_score
from edge_agent.tracking import FaceTracker
from facewire.config import EdgeSettings
from facewire.faces import Face, FaceAnalyzer
from facewire.models.detector import Detection
from facewire.schema import FaceEmbedding
from facewire.sources import Frame


@dataclass(frozen=True)
class TrackedFace:
    """A face of the last frame: its box, track and the seq it was published as (None: not sent)."""

    bbox: tuple[float, float, float, float]
    track: int
    seq: int | None


@dataclass
class PipelineCounters:
    """Faces detected = gated + duplicates + published; embedded counts the embedder's runs."""

    frames: int = 0
    faces: int = 0
    embedded: int = 0
    published: int = 0
    duplicates: int = 0  # faces not sent: their track's face was sent already, or the same again
    gated: Counter[str] = field(default_factory=Counter)  # faces not embedded, per reason (quality.REASONS)

    def gated_text(self) -> str:
        """``small 3, blurred 2`` (in the order of quality.REASONS), or ``none``."""
        return ", ".join(f"{reason} {self.gated[reason]}" for reason in REASONS if self.gated[reason]) or "none"


class EdgePipeline:
    """Detect and track the faces of each frame, gate them, embed the few worth it, keep what is worth sending."""

    def __init__(self, analyzer: FaceAnalyzer, settings: EdgeSettings, next_seq: Callable[[], int]) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.next_seq = next_seq
        self.tracker = FaceTracker(settings.track_iou, settings.track_max_age)
        self.detection = AdaptiveDetection(analyzer.detector, settings.min_face, settings.full_scan_seconds)
        self.gates = Gates.of(settings)
        self.counters = PipelineCounters()
        self.last_faces: list[TrackedFace] = []  # faces of tracks that have been sent (a name is on its way)
        self._scene = ""  # the still image a folder frame came from ('' for video): tracks never cross images
        self._last_ts: float | None = None

    def process(self, frame: Frame) -> list[FaceEmbedding]:
        """The messages this frame produces (a track's first, clearly better or refreshed face)."""
        self.counters.frames += 1
        self.last_faces = []
        if frame.label != self._scene:
            self.tracker.end_all()
            self._scene = frame.label
        smallest = None if self._last_ts is None else self.tracker.smallest_face(self._last_ts)
        self._last_ts = frame.ts
        detections = self.detection.detect(frame.image, frame.ts, smallest)
        tracks = self.tracker.update([d.bbox for d in detections], frame.ts)
        self.counters.faces += len(detections)
        chosen: list[tuple[Face, int]] = []
        for detection, track in zip(detections, tracks, strict=True):
            face = self._worth_embedding(frame, detection, track)
            if face is not None:
                chosen.append((face, track))
            elif self.tracker.published_before(track):
                self.last_faces.append(TrackedFace(detection.bbox, track, None))
        if not chosen:
            return []
        self.analyzer.embed([face for face, _track in chosen])
        self.counters.embedded += len(chosen)
        messages = [m for m in (self._message(frame, face, track) for face, track in chosen) if m is not None]
        self.counters.published += len(messages)
        return messages

    def _worth_embedding(self, frame: Frame, detection: Detection, track: int) -> Face | None:
        """The aligned face if it passes the gates and its track wants an embedding now; None otherwise."""
        reason = self.gates.detection(detection)
        face = self.analyzer.prepare(frame.image, detection) if reason is None else None
        if reason is None:
            reason = "unmasked" if face is None else self.gates.face(face)
        if reason is not None:
            self.counters.gated[reason] += 1
            return None
        assert face is not None
        score = quality_score(face)
        settings = self.settings
        if not self.tracker.wants_embedding(track, score, frame.ts, settings.better_face, settings.refresh_seconds):
            self.counters.duplicates += 1
            return None
        self.tracker.embedded(track, score, frame.ts)
        return face

    def _message(self, frame: Frame, face: Face, track: int) -> FaceEmbedding | None:
        """The message of an embedded face, or None when it is near-identical to the track's last one sent."""
        assert face.embedding is not None
        settings = self.settings
        if not self.tracker.should_publish(
            track, face.embedding, frame.ts, settings.dedup_cosine, settings.refresh_seconds
        ):
            self.counters.duplicates += 1
            self.last_faces.append(TrackedFace(face.detection.bbox, track, None))
            return None
        seq = self.next_seq()
        self.last_faces.append(TrackedFace(face.detection.bbox, track, seq))
        return face_message(settings.node_id, self.analyzer.embedder.model_id, frame, face, track, seq)


def face_message(node: str, model: str, frame: Frame, face: Face, track: int, seq: int) -> FaceEmbedding:
    """The FaceEmbedding message of an embedded face of ``frame``."""
    assert face.embedding is not None
    return FaceEmbedding(
        node=node,
        seq=seq,
        ts=frame.ts,
        frame=frame.index,
        track=track,
        bbox=face.detection.bbox,
        det=face.detection.score,
        quality=face.quality,
        model=model,
        emb=face.embedding,
    )
