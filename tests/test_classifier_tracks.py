"""Per-track decisions in the classifier: a small, poor frame of a track is judged with its best frames."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from classifier_service.core import Arrival, Classifier
from classifier_service.matcher import UNKNOWN, Matcher
from classifier_service.tracks import TrackMemory
from facewire.schema import FaceEmbedding, FaceResult
from tests.test_schema import embedding, unit


def blend(base: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly ``cosine`` to the unit vector ``base``."""
    other = unit(seed=seed)
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    return (cosine * base + np.sqrt(1 - cosine**2) * other).astype(np.float32)


ADA = unit(seed=1)
BOB = unit(seed=2)


def classifier(frames: int) -> Classifier:
    matcher = Matcher(np.stack([ADA, BOB]), ["ada", "bob"], threshold=0.5)
    return Classifier(matcher, "sface-2021dec", "v1", dim=128, tracks=TrackMemory(frames=frames, gap_seconds=10.0))


def frame(seq: int, emb: np.ndarray, size: float, track: int = 5, ts: float | None = None) -> Arrival:
    message = embedding(seq=seq, track=track, emb=emb, quality={"size": size}, ts=ts or 1_700_000_000.0 + seq)
    return Arrival(message, time.time())


def names(results: Sequence[object]) -> list[str]:
    return [r.name for r in results if isinstance(r, FaceResult)]


def test_a_small_poor_frame_is_named_through_its_track() -> None:
    big, small = blend(ADA, 0.75, seed=10), blend(ADA, 0.35, seed=10)  # the small one alone is below 0.5
    assert names(classifier(1).classify([frame(1, big, 90.0), frame(2, small, 22.0)])) == ["ada", UNKNOWN]
    served = classifier(2)
    first = served.classify([frame(1, big, 90.0)])
    second = served.classify([frame(2, small, 22.0)])
    assert names(first + second) == ["ada", "ada"]
    assert isinstance(second[0], FaceResult) and 0.5 <= second[0].score < first[0].score  # type: ignore[union-attr]


def test_only_the_largest_frames_are_kept_and_better_frames_refine_the_name() -> None:
    memory = TrackMemory(frames=2)
    vectors = [blend(ADA, 0.6, seed=s) for s in range(20, 24)]
    sizes = [40.0, 90.0, 30.0, 120.0]
    used = [
        memory.probe(embedding(seq=i, track=1, emb=v, quality={"size": s}))
        for i, (v, s) in enumerate(zip(vectors, sizes, strict=True))
    ]

    def mean(*rows: np.ndarray) -> np.ndarray:
        m = np.mean(rows, axis=0)
        return m / np.linalg.norm(m)

    assert np.allclose(used[0], vectors[0], atol=1e-6)
    assert np.allclose(used[1], mean(vectors[0], vectors[1]), atol=1e-6)
    assert np.allclose(used[2], mean(vectors[0], vectors[1]), atol=1e-6), "a 30 px face is judged on the 40 and 90"
    assert np.allclose(used[3], mean(vectors[1], vectors[3]), atol=1e-6)


def test_a_different_face_or_a_long_gap_starts_the_track_afresh() -> None:
    served = classifier(2)
    out = served.classify([frame(1, blend(ADA, 0.9, 30), 90.0), frame(2, blend(BOB, 0.9, 31), 30.0)])
    assert names(out) == ["ada", "bob"], "a tracker swap to another person does not blend two faces"
    weak = blend(ADA, 0.35, seed=32)
    later = served.classify([frame(3, blend(ADA, 0.9, 33), 90.0, track=7), frame(4, weak, 20.0, track=7, ts=2e9)])
    assert names(later) == ["ada", UNKNOWN], "30 years later the track's old frames no longer count"
    assert names(served.classify([frame(5, weak, 20.0, track=8)])) == [UNKNOWN], "tracks are per id"


def test_redelivery_is_answered_from_memory_and_erasure_drops_every_track() -> None:
    served = classifier(2)
    big, small = frame(1, blend(ADA, 0.75, 40), 90.0), frame(2, blend(ADA, 0.35, 40), 22.0)
    first = served.classify([big, small])
    again = served.classify([big, small])
    assert [r.score for r in again] == [r.score for r in first]  # type: ignore[union-attr]
    assert len(served.tracks) == 1
    served.forget_name("ada")
    assert len(served.tracks) == 0
    assert names(served.classify([frame(3, blend(ADA, 0.35, 42), 22.0)])) == [UNKNOWN]


def test_messages_without_a_size_still_aggregate() -> None:
    memory = TrackMemory(frames=3)
    a, b = blend(ADA, 0.7, 50), blend(ADA, 0.7, 51)
    memory.probe(FaceEmbedding(**{**embedding(emb=a).__dict__, "quality": {}}))
    used = memory.probe(FaceEmbedding(**{**embedding(seq=8, emb=b).__dict__, "quality": {}}))
    assert float(used @ ADA) > 0.7
