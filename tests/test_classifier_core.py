"""The classifier's pure core: FAISS decisions, batching, dead letters, redelivery, fairness."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from classifier_service.core import Arrival, Classifier, Rejection
from classifier_service.fair_queue import FairQueue
from classifier_service.matcher import UNKNOWN, Matcher
from classifier_service.quality import Cohort
from classifier_service.service import Incoming, decide, result_json
from facewire.schema import DeadLetter, FaceEmbedding, FaceResult
from facewire.topics import Topics
from tests.test_schema import embedding, unit


def gallery() -> tuple[np.ndarray, list[str]]:
    vectors = np.stack([unit(seed=1), unit(seed=2), unit(seed=3)])
    return vectors, ["ada", "ada", "bob"]


def test_matcher_names_enrolled_and_rejects_below_threshold() -> None:
    vectors, labels = gallery()
    matcher = Matcher(vectors, labels, threshold=0.5, top_k=3)
    noisy = vectors[2] + 0.05 * unit(seed=9)
    stranger = unit(seed=42)
    first, second = matcher.match(np.stack([noisy / np.linalg.norm(noisy), stranger]))
    assert (first.name, first.known) == ("bob", True) and first.score > 0.9
    assert (second.name, second.known) == (UNKNOWN, False) and second.score < 0.5
    assert first.candidates[0].name == "bob" and {c.name for c in first.candidates} == {"ada", "bob"}


def test_empty_gallery_answers_unknown() -> None:
    matcher = Matcher(np.zeros((0, 128), dtype=np.float32), [], threshold=0.4)
    assert matcher.match(np.stack([unit()]))[0].name == UNKNOWN


def make_classifier() -> Classifier:
    vectors, labels = gallery()
    # no cohort term: these random vectors are not faces, so the shipped SFace reference does not apply
    return Classifier(Matcher(vectors, labels, 0.5, cohort=Cohort()), "sface-2021dec", "v1", dim=128)


def incoming(message: FaceEmbedding, topic: str | None = None) -> Incoming:
    return Incoming(topic or Topics().embeddings(message.node), message.to_msgpack(), time.time())


def test_batch_mixes_results_and_dead_letters_in_order() -> None:
    classifier = make_classifier()
    batch = [
        incoming(embedding(seq=1, emb=unit(seed=1))),
        Incoming("facewire/embeddings/cam-1", b"garbage", time.time()),
        incoming(embedding(seq=2), topic="facewire/embeddings/other-node"),
        incoming(embedding(seq=3, model="clip-vit-b32")),
        incoming(embedding(seq=4, emb=unit(seed=77))),
    ]
    out = decide(classifier, Topics(), batch)
    assert isinstance(out[0], FaceResult) and out[0].name == "ada" and out[0].seq == 1
    assert [o.reason for o in out[1:4] if isinstance(o, DeadLetter)] == [
        "not-msgpack",
        "node-mismatch",
        "model-mismatch",
    ]
    assert isinstance(out[4], FaceResult) and out[4].name == UNKNOWN and not out[4].known
    assert out[0].gallery_version == "v1" and out[0].threshold == 0.5 and out[0].latency_ms >= 0


def test_redelivered_message_gets_the_same_answer() -> None:
    classifier = make_classifier()
    message = incoming(embedding(seq=9, emb=unit(seed=3)))
    first = decide(classifier, Topics(), [message])[0]
    again = decide(classifier, Topics(), [message])[0]
    assert first == again


def test_an_empty_gallery_still_rejects_a_wrong_dimension() -> None:
    """The expected dimension is the model's (registry), not the gallery's: an empty gallery has none."""
    empty = Classifier(Matcher(np.zeros((0, 0), dtype=np.float32), [], 0.5), "sface-2021dec", "v0", dim=128)
    out = empty.classify([Arrival(embedding(seq=1, emb=unit(dim=64)), time.time()), Arrival(embedding(seq=2), 0.0)])
    assert out[0] == Rejection("wrong-dimension", "64 != 128")
    assert isinstance(out[1], FaceResult) and out[1].name == UNKNOWN


def test_a_message_the_core_fails_on_is_dead_lettered_and_the_rest_answered() -> None:
    def broken(pairs: list[tuple[FaceEmbedding, FaceResult]]) -> None:
        if any(e.seq == 13 for e, _r in pairs):
            raise RuntimeError("observer failed")

    vectors, labels = gallery()
    classifier = Classifier(Matcher(vectors, labels, 0.5), "sface-2021dec", "v1", dim=128, observer=broken)
    out = decide(classifier, Topics(), [incoming(embedding(seq=12)), incoming(embedding(seq=13))])
    assert isinstance(out[0], FaceResult) and out[0].seq == 12
    assert isinstance(out[1], DeadLetter) and out[1].reason == "internal-error" and "observer failed" in out[1].detail


def test_fair_queue_interleaves_nodes() -> None:
    queue: FairQueue[str] = FairQueue(capacity=100)
    for i in range(10):
        queue.put("flood", f"f{i}")
    queue.put("quiet", "q0")
    batch = queue.take(limit=4, wait=0, timeout=1)
    assert "q0" in batch[:2] and len(batch) == 4
    assert queue.depths() == {"flood": 7}


def test_fair_queue_put_blocks_at_capacity_until_taken() -> None:
    queue: FairQueue[int] = FairQueue(capacity=2)
    queue.put("a", 1)
    queue.put("a", 2)
    done = threading.Event()

    def put_third() -> None:
        queue.put("a", 3)
        done.set()

    threading.Thread(target=put_third, daemon=True).start()
    assert not done.wait(0.2)
    assert queue.take(limit=1, wait=0, timeout=1) == [1]
    assert done.wait(2)


@pytest.mark.parametrize("limit", [1, 5])
def test_fair_queue_take_times_out_empty(limit: int) -> None:
    assert FairQueue[int](capacity=4).take(limit=limit, wait=0.01, timeout=0.05) == []


def test_fair_queue_take_returns_once_the_batch_fills_and_at_the_deadline_otherwise() -> None:
    """The taker is woken for a first item and for a full batch, not per put (issue 21)."""
    queue: FairQueue[int] = FairQueue(capacity=100)
    got: list[list[int]] = []
    taker = threading.Thread(target=lambda: got.append(queue.take(limit=3, wait=5.0, timeout=5.0)))
    start = time.monotonic()
    taker.start()
    for i in range(3):
        time.sleep(0.05)
        queue.put("a", i)
    taker.join(5)
    assert got == [[0, 1, 2]] and time.monotonic() - start < 2.0
    queue.put("a", 9)
    start = time.monotonic()
    assert queue.take(limit=3, wait=0.2, timeout=1) == [9]
    assert 0.15 < time.monotonic() - start < 2.0


def test_result_json_is_the_schema_encoding() -> None:
    """The service's orjson encoding of a FaceResult is the object FaceResult.to_json writes."""
    matcher = Matcher(*gallery(), threshold=0.5, top_k=3)
    classifier = Classifier(matcher, "sface-2021dec", "v1", dim=128)
    results = decide(
        classifier,
        Topics(),
        [
            Incoming(
                f"facewire/embeddings/n{i}", embedding(node=f"n{i}", seq=i, emb=unit(seed=i)).to_msgpack(), time.time()
            )
            for i in range(5)
        ],
    )
    for result in results:
        assert isinstance(result, FaceResult) and result.candidates
        assert json.loads(result_json(result)) == json.loads(result.to_json())
        assert FaceResult.from_json(result_json(result)) == FaceResult.from_json(result.to_json())
