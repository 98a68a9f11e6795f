"""The edge agent's pure core: a frame in, the FaceEmbedding messages to publish out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.tracking import FaceTracker
from facewire.config import EdgeSettings
from facewire.faces import FaceAnalyzer
from facewire.schema import FaceEmbedding
from facewire.sources import Frame


@dataclass(frozen=True)
class TrackedFace:
    """A face of the last frame: its box, track and the seq it was published as (None: de-duplicated)."""

    bbox: tuple[float, float, float, float]
    track: int
    seq: int | None


@dataclass
class PipelineCounters:
    frames: int = 0
    faces: int = 0
    published: int = 0
    duplicates: int = 0


class EdgePipeline:
    """Detect, align, embed and track the faces of each frame; keep only embeddings worth sending."""

    def __init__(self, analyzer: FaceAnalyzer, settings: EdgeSettings, next_seq: Callable[[], int]) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.next_seq = next_seq
        self.tracker = FaceTracker(settings.track_iou, settings.track_max_age)
        self.counters = PipelineCounters()
        self.last_faces: list[TrackedFace] = []
        self._scene = ""  # the still image a folder frame came from ('' for video): tracks never cross images

    def process(self, frame: Frame) -> list[FaceEmbedding]:
        """The messages this frame produces (new faces, or tracked faces that changed enough)."""
        self.counters.frames += 1
        self.last_faces = []
        if frame.label != self._scene:
            self.tracker.end_all()
            self._scene = frame.label
        faces = self.analyzer.faces(frame.image)
        if not faces:
            return []
        self.analyzer.embed(faces)
        track_ids = self.tracker.update([face.detection.bbox for face in faces], frame.ts)
        messages = []
        for face, track in zip(faces, track_ids, strict=True):
            assert face.embedding is not None
            self.counters.faces += 1
            if not self.tracker.should_publish(
                track, face.embedding, frame.ts, self.settings.dedup_cosine, self.settings.refresh_seconds
            ):
                self.counters.duplicates += 1
                self.last_faces.append(TrackedFace(face.detection.bbox, track, None))
                continue
            seq = self.next_seq()
            self.last_faces.append(TrackedFace(face.detection.bbox, track, seq))
            messages.append(
                FaceEmbedding(
                    node=self.settings.node_id,
                    seq=seq,
                    ts=frame.ts,
                    frame=frame.index,
                    track=track,
                    bbox=face.detection.bbox,
                    det=face.detection.score,
                    quality=face.quality,
                    model=self.analyzer.embedder.model_id,
                    emb=face.embedding,
                )
            )
        self.counters.published += len(messages)
        return messages
