"""The classifier's pure core: embeddings in, decisions out (a named or unknown result, or a rejection).

It knows nothing of MQTT, bytes or dead letters: :mod:`classifier_service.service` decodes
the wire format and turns rejections into dead letters.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from classifier_service.matcher import Matcher
from classifier_service.quality import margin
from classifier_service.tracks import TrackMemory
from facewire.schema import FaceEmbedding, FaceResult

Observer = Callable[[list[tuple[FaceEmbedding, FaceResult]]], None]


@dataclass(frozen=True)
class Arrival:
    """One embedding and when it reached the classifier (for latency and the capture-time checks)."""

    embedding: FaceEmbedding
    received: float


@dataclass(frozen=True)
class Rejection:
    """An embedding the core will not classify, and why."""

    reason: str
    detail: str


Decision = FaceResult | Rejection


class Classifier:
    """Checks, de-duplicates and identifies embeddings in batches.

    ``dim`` is the embedding dimension of the model (from the model registry, never from the gallery,
    which may be empty). ``max_age``/``max_future`` (seconds, 0: off) reject replayed or stale and
    far-future capture times. ``observer`` is called with every freshly classified (embedding, result)
    pair. ``tracks`` judges video tracks on their best frames so far (default: per frame).
    ``quality_slopes`` raise the score needed for a small, blurred or turned face
    (:func:`classifier_service.quality.margin`, on the largest face the decision rests on).
    """

    def __init__(
        self,
        matcher: Matcher,
        model_id: str,
        gallery_version: str,
        *,
        dim: int,
        memory: int = 100_000,
        max_age: float = 0.0,
        max_future: float = 0.0,
        observer: Observer | None = None,
        tracks: TrackMemory | None = None,
        quality_slopes: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        self._state = (matcher, gallery_version)
        self.model_id = model_id
        self.dim = dim
        self._answered: OrderedDict[tuple[str, int], FaceResult] = OrderedDict()
        self._memory = memory
        self._max_age, self._max_future = max_age, max_future
        self._observer = observer
        self.tracks = tracks if tracks is not None else TrackMemory(frames=1)
        self.quality_slopes = quality_slopes

    @property
    def matcher(self) -> Matcher:
        return self._state[0]

    @property
    def gallery_version(self) -> str:
        return self._state[1]

    def swap(self, matcher: Matcher, gallery_version: str) -> None:
        """Serve a new gallery from the next batch on (one atomic assignment: no pause, no mixed state)."""
        self._state = (matcher, gallery_version)

    def forget_name(self, name: str) -> int:
        """Drop remembered results naming ``name`` and every track's frames (erasure); returns how many."""
        self.tracks.forget()
        keys = [key for key, result in list(self._answered.items()) if result.name == name]
        for key in keys:
            self._answered.pop(key, None)
        return len(keys)

    def check(self, arrival: Arrival) -> Rejection | None:
        """Why this classifier will not classify ``arrival``, or None when it will."""
        embedding, received = arrival.embedding, arrival.received
        if embedding.model != self.model_id:
            return Rejection("model-mismatch", f"embedding from {embedding.model!r}, gallery is {self.model_id!r}")
        if embedding.dim != self.dim:
            return Rejection("wrong-dimension", f"{embedding.dim} != {self.dim}")
        if self._max_future and embedding.ts > received + self._max_future:
            ahead = embedding.ts - received
            return Rejection("future-timestamp", f"ts {embedding.ts:.3f} is {ahead:.0f}s ahead of the classifier")
        if self._max_age and embedding.ts < received - self._max_age:
            old = received - embedding.ts
            return Rejection("stale-timestamp", f"ts {embedding.ts:.3f} is {old:.0f}s old (max {self._max_age:.0f}s)")
        return None

    def classify(self, batch: list[Arrival]) -> list[Decision]:
        """One decision per arrival, in order; one FAISS search for all new, accepted embeddings."""
        pending: list[Decision | Arrival] = []
        for arrival in batch:
            rejection = self.check(arrival)
            previous = self._answered.get(arrival.embedding.key)
            pending.append(rejection or previous or arrival)
        fresh = [p for p in pending if isinstance(p, Arrival)]
        matcher, gallery_version = self._state
        judged = [self.tracks.judge(a.embedding) for a in fresh]
        margins = np.array([margin(quality, self.quality_slopes) for _vector, quality in judged])
        matches = matcher.match(np.stack([vector for vector, _quality in judged]), margins) if fresh else []
        decided = dict(zip((id(a) for a in fresh), matches, strict=True))
        now = time.time()
        decisions: list[Decision] = []
        observed: list[tuple[FaceEmbedding, FaceResult]] = []
        for item in pending:
            if isinstance(item, Arrival):
                match, embedding = decided[id(item)], item.embedding
                result = FaceResult(
                    node=embedding.node,
                    seq=embedding.seq,
                    track=embedding.track,
                    frame=embedding.frame,
                    ts=embedding.ts,
                    name=match.name,
                    score=match.score,
                    known=match.known,
                    threshold=match.threshold,
                    model=self.model_id,
                    gallery_version=gallery_version,
                    classified_at=now,
                    latency_ms=round((now - item.received) * 1000.0, 3),
                    bbox=embedding.bbox,
                    candidates=match.candidates[:3],
                )
                observed.append((embedding, result))
                item = result
            decisions.append(item)
        if observed and self._observer is not None:
            self._observer(observed)
        for _embedding, result in observed:  # only now: a batch that failed is decided afresh, one by one
            self._remember(result)
        return decisions

    def recent(self, since: float) -> list[FaceResult]:
        """Remembered results classified at or after ``since``, oldest first (re-sent after a broker crash)."""
        found = []
        for result in reversed(self._answered.values()):
            if result.classified_at < since:
                break
            found.append(result)
        return found[::-1]

    def _remember(self, result: FaceResult) -> None:
        self._answered[result.key] = result
        while len(self._answered) > self._memory:
            self._answered.popitem(last=False)
