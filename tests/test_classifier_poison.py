"""One message never kills a classifier worker: poison commands and embeddings against a real process."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from classifier_service.core import Classifier
from classifier_service.gallery.client import GalleryClient
from classifier_service.matcher import Matcher
from classifier_service.service import ClassifierService
from facewire.config import ClassifierSettings, MqttSettings
from facewire.mqtt import MqttConnection
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import Collector, RunningClassifier, status_online
from tests.gallery_support import KNOWN, make_gallery, photos
from tests.test_schema import embedding, unit

GALLERY_CMD = "facewire/gallery/cmd/operator"  # the sender's account (broker/acl)
DEADLETTERS = "facewire/deadletter/classifier"
DEPTH = 50_000  # far beyond Python's recursion limit, well below the broker's 256 KB packets


def poison_commands() -> dict[str, bytes]:
    """Gallery commands that crashed the parser (or its error path), by the reason they must get now."""
    big = "9" * 400
    return {
        "too-deep": b'{"op": "forget", "person": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        "not-normalised": f'{{"op": "enroll", "person": "Ada", "embeddings": [[{big}, 0]]}}'.encode(),
        "bad-result": json.dumps({"op": "reject", "result": "cam-1/\u00b2"}).encode(),
    }


def test_poison_gallery_commands_are_dead_lettered_and_later_commands_still_apply(
    broker: LocalBroker, tmp_path: Path
) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:2]})
    status_topic = "facewire/services/classifier/poison/status"
    watch = Collector(broker.url, [DEADLETTERS, status_topic]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="poison").start()
    sender = MqttConnection(MqttSettings(url=broker.url), "poisoner")
    sender.connect()
    client = GalleryClient(MqttSettings(url=broker.url), actor="test").__enter__()
    try:
        for payload in poison_commands().values():
            sender.publish(GALLERY_CMD, payload)
        letters = watch.wait_for(lambda t: t == DEADLETTERS, len(poison_commands()), timeout=30)
        assert sorted(json.loads(p)["reason"] for _t, p in letters) == sorted(poison_commands())
        answered = client.request({"op": "whereis", "person": "Colin_Powell"}, timeout=30)[0]
        assert answered["event"] != "error", "the gallery worker lived and applies later commands"
        assert classifier.process is not None and classifier.process.poll() is None
        assert status_online(watch.matching(lambda t: t == status_topic)[-1][1])
    finally:
        client.__exit__()
        sender.close()
        code = classifier.stop()
        watch.stop()
    assert code == 0


def test_an_empty_gallery_dead_letters_a_wrong_dimension_and_keeps_classifying(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The dimension comes from the model registry (128 for SFace), not from the (empty) gallery."""
    (tmp_path / "gallery").mkdir()
    topic = "facewire/embeddings/cam-1"
    watch = Collector(broker.url, [DEADLETTERS, "facewire/results/cam-1"]).start()
    classifier = RunningClassifier(broker.url, tmp_path / "gallery", tmp_path, instance="empty").start()
    sender = MqttConnection(MqttSettings(url=broker.url), "edge-cam-1")
    sender.connect()
    try:
        for seq in range(20):  # a burst, so wrong and right dimensions share batches
            dim = 64 if seq % 2 else 128
            message = embedding(seq=seq, ts=time.time(), emb=unit(dim=dim, seed=seq))
            sender.publish(topic, message.to_msgpack())
        letters = watch.wait_for(lambda t: t == DEADLETTERS, 10, timeout=30)
        results = watch.wait_for(lambda t: t.startswith("facewire/results/"), 10, timeout=30)
        assert [json.loads(p)["reason"] for _t, p in letters] == ["wrong-dimension"] * 10
        assert sorted(json.loads(p)["seq"] for _t, p in results) == list(range(0, 20, 2))
        again = embedding(seq=100, ts=time.time(), emb=unit(seed=100))
        sender.publish(topic, again.to_msgpack())
        later = watch.wait_for(lambda t: t.startswith("facewire/results/"), 11, timeout=30)
        assert json.loads(later[-1][1])["seq"] == 100, "the worker is alive after the burst"
    finally:
        sender.close()
        code = classifier.stop()
        watch.stop()
    assert code == 0


def test_a_worker_that_dies_anyway_is_reported_and_never_heartbeats_online(broker: LocalBroker) -> None:
    """An error outside the per-message handling (here a BaseException from the observer) ends the worker:
    the service reports it (the command then exits non-zero) and its status says offline, never online."""
    died = threading.Event()

    def fatal(_observed: object) -> None:
        raise SystemExit("the observer ended the worker")

    empty = Matcher(np.zeros((0, 0), dtype=np.float32), [], 0.5)
    classifier = Classifier(empty, "sface-2021dec", "v0", dim=128, observer=fatal)
    connection = MqttConnection(MqttSettings(url=broker.url), "classifier-dies", manual_ack=True)
    service = ClassifierService(classifier, connection, Topics(), ClassifierSettings(), "dies", lambda _w: died.set())
    watch = Collector(broker.url, [service.status_topic]).start()
    sender = MqttConnection(MqttSettings(url=broker.url), "edge-cam-1")
    try:
        connection.set_will(service.will())
        service.start()
        connection.connect()
        service.announce()
        assert status_online(watch.wait_for(lambda t: True, 1, timeout=10)[-1][1])
        sender.connect()
        sender.publish("facewire/embeddings/cam-1", embedding(seq=1, ts=time.time()).to_msgpack())
        assert died.wait(20), "the worker's death is reported"
        service.heartbeat()
        last = watch.wait_for(lambda t: True, 2, timeout=10)[-1][1]
        assert json.loads(last)["state"] == "offline"
    finally:
        sender.close()
        service.stop(timeout=2)
        watch.stop()
