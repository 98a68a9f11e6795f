"""The classifier's pure core: a batch of raw embedding messages in, results and dead letters out."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from classifier_service.matcher import Matcher
from classifier_service.tracks import TrackMemory
from facewire.errors import SchemaError
from facewire.schema import DeadLetter, FaceEmbedding, FaceResult
from facewire.topics import Topics


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    received: float


class Classifier:
    """Validates, de-duplicates and identifies embeddings in batches."""

    def __init__(self, matcher: Matcher, model_id: str, gallery_version: str, topics: Topics, memory: int = 100_000):
        self._state = (matcher, gallery_version)
        self.model_id = model_id
        self.topics = topics
        self._answered: OrderedDict[tuple[str, int], FaceResult] = OrderedDict()
        self._memory = memory
        # Capture-time checks in seconds (0: off): replayed/stale and far-future timestamps are dead letters.
        self.max_age = 0.0
        self.max_future = 0.0
        # Called with every freshly classified (embedding, result) pair, e.g. to keep probes and unknowns.
        self.observer: Callable[[list[tuple[FaceEmbedding, FaceResult]]], None] | None = None
        # Video tracks are judged on their best frames so far (classifier_service.tracks); frames=1: per frame.
        self.tracks = TrackMemory(frames=1)

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

    def decode(self, message: Incoming) -> FaceEmbedding:
        """Decode one message and check it belongs to this classifier; SchemaError otherwise."""
        embedding = FaceEmbedding.from_msgpack(message.payload)
        topic_node = self.topics.node_of(message.topic, "embeddings")
        if topic_node != embedding.node:
            raise SchemaError("node-mismatch", f"topic says {topic_node!r}, payload says {embedding.node!r}")
        if embedding.model != self.model_id:
            raise SchemaError("model-mismatch", f"embedding from {embedding.model!r}, gallery is {self.model_id!r}")
        if embedding.dim != self.matcher.dim and self.matcher.dim:
            raise SchemaError("wrong-dimension", f"{embedding.dim} != {self.matcher.dim}")
        self._check_time(embedding.ts, message.received)
        return embedding

    def _check_time(self, ts: float, received: float) -> None:
        """Reject capture times too far ahead of our clock, or older than any spool would keep."""
        if self.max_future and ts > received + self.max_future:
            raise SchemaError("future-timestamp", f"ts {ts:.3f} is {ts - received:.0f}s ahead of the classifier")
        if self.max_age and ts < received - self.max_age:
            raise SchemaError("stale-timestamp", f"ts {ts:.3f} is {received - ts:.0f}s old (max {self.max_age:.0f}s)")

    def classify(self, batch: list[Incoming]) -> list[FaceResult | DeadLetter]:
        """One outcome per message, in order; one FAISS search for all new, valid embeddings."""
        outcomes: list[FaceResult | DeadLetter | FaceEmbedding] = []
        for message in batch:
            try:
                embedding = self.decode(message)
            except SchemaError as exc:
                outcomes.append(DeadLetter(exc.reason, exc.detail, message.topic, message.payload))
                continue
            previous = self._answered.get(embedding.key)
            outcomes.append(previous if previous is not None else embedding)
        fresh = [o for o in outcomes if isinstance(o, FaceEmbedding)]
        matcher, gallery_version = self._state
        matches = matcher.match(np.stack([self.tracks.probe(e) for e in fresh])) if fresh else []
        decided = dict(zip((id(e) for e in fresh), matches, strict=True))
        received = {id(o): m.received for o, m in zip(outcomes, batch, strict=True)}
        now = time.time()
        results: list[FaceResult | DeadLetter] = []
        observed: list[tuple[FaceEmbedding, FaceResult]] = []
        for outcome in outcomes:
            if isinstance(outcome, FaceEmbedding):
                match = decided[id(outcome)]
                embedding_of = outcome
                outcome = FaceResult(
                    node=outcome.node,
                    seq=outcome.seq,
                    track=outcome.track,
                    frame=outcome.frame,
                    ts=outcome.ts,
                    name=match.name,
                    score=match.score,
                    known=match.known,
                    threshold=matcher.threshold,
                    model=self.model_id,
                    gallery_version=gallery_version,
                    classified_at=now,
                    latency_ms=round((now - received[id(outcome)]) * 1000.0, 3),
                    bbox=outcome.bbox,
                    candidates=match.candidates[:3],
                )
                observed.append((embedding_of, outcome))
                self._remember(outcome)
            results.append(outcome)
        if observed and self.observer is not None:
            self.observer(observed)
        return results

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
