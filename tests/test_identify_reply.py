"""Search by photo answers where and how it was asked (a real classifier and mosquitto).

MQTT 5 clients name the reply in the request's properties and their correlation data is opaque bytes: it
comes back as the reply's property, byte for byte, whatever it holds. MQTT 3.1.1 clients put ``reply_to``
and a text ``correlation`` in the request: the reply's body carries it back.
"""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np

from classifier_service.identify_service import IdentifyService, encode_for_request
from classifier_service.matcher import Matcher
from facewire.config import ModelSettings, MqttSettings
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire.mqtt import Message, MqttConnection
from facewire.schema.identify import IdentifyRequest, IdentifyResponse
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import RunningClassifier
from tests.gallery_support import KNOWN, make_gallery, photos

TOPICS = Topics("facewire")


def test_replies_keep_binary_correlation_data_and_a_text_correlation(broker: LocalBroker, tmp_path: Path) -> None:
    colin = photos(KNOWN / "Colin_Powell")
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": colin[:3]})
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="idr").start()
    replies: queue.Queue[Message] = queue.Queue()
    asker = MqttConnection(MqttSettings(url=broker.url), "identify-reply-test")
    reply_topic = TOPICS.identify_response("identify-reply-test")
    asker.subscribe(reply_topic, replies.put)
    asker.connect()
    try:
        image = encode_for_request(load_image(colin[4]))
        binary = b"\x00\x1b[2J\x07\xff"  # control bytes and a byte that is not UTF-8: opaque to the service
        request = IdentifyRequest((image,), 3)
        asker.publish(TOPICS.identify_request(), request.to_json(), response_topic=reply_topic, correlation_data=binary)
        first = replies.get(timeout=60)
        assert first.correlation_data == binary
        answer = IdentifyResponse.from_json(first.payload)
        assert answer.ok and [face.name for face in answer.results[0]][:1] == ["Colin_Powell"], answer
        assert answer.correlation == ""

        v311 = IdentifyRequest((image,), 3, reply_to=reply_topic, correlation="req-7")
        asker.publish(TOPICS.identify_request(), v311.to_json())
        second = IdentifyResponse.from_json(replies.get(timeout=60).payload)
        assert second.ok and second.correlation == "req-7", second
    finally:
        asker.close()
        assert classifier.stop() == 0


def test_a_model_that_fails_to_load_is_an_answer_not_a_dead_worker(tmp_path: Path) -> None:
    """The analyzer loads on the first request; an embedder file that is not ONNX fails there with a ModelError.
    The request is answered with the error (and acked); before, the exception ended the identify worker thread
    while the classifier stayed online, and every later request waited unacked in the connection's window."""
    broken = tmp_path / "embedder.onnx"
    broken.write_bytes(b"this is not an ONNX file")
    settings = ModelSettings(embedder=str(broken), cache_dir=tmp_path / "cache")
    service = IdentifyService(
        MqttConnection(MqttSettings(url="mqtt://127.0.0.1:9"), "never-connected"),
        TOPICS,
        lambda: Matcher(np.eye(1, 128, dtype=np.float32), ["Ada"], 0.48),
        lambda: create_analyzer(settings, det_threshold=0.6, min_face=20),
        "classifiers",
    )
    photo = encode_for_request(load_image(photos(KNOWN / "Colin_Powell")[0]))
    answer = service.answer(IdentifyRequest((photo,), 3))
    assert not answer.ok and answer.error.startswith("internal error: ModelError"), answer
