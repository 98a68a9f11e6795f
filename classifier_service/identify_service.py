"""Search by photo over MQTT: requests on ``facewire/identify/req``, answers on the request's response topic.

A request is JSON ``{"images": [base64, ...], "top_k": 3}`` published with the MQTT 5 properties
ResponseTopic and CorrelationData (MQTT 3.1.1 clients put ``"reply_to"`` and ``"correlation"`` in the
JSON instead). The replicas share the request subscription, so one of them answers, with the gallery
it serves at that moment. Requests are handled on a worker thread, never on the MQTT network thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from classifier_service.identify import identify_image
from classifier_service.matcher import Matcher
from facewire.config import MqttSettings
from facewire.errors import BrokerError, ImageError, SchemaError
from facewire.faces import FaceAnalyzer
from facewire.images import decode_image
from facewire.logs import kv
from facewire.mqtt import MqttConnection
from facewire.topics import Topics

log = logging.getLogger(__name__)
MAX_IMAGES = 8


def parse_request(payload: bytes) -> tuple[list[bytes], int]:
    """The image bytes and top-k of a request; SchemaError with the reason otherwise."""
    try:
        request = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("not-json", str(exc)[:120]) from exc
    if not isinstance(request, dict) or not isinstance(request.get("images"), list) or not request["images"]:
        raise SchemaError("wrong-type", "images must be a non-empty list of base64 strings")
    if len(request["images"]) > MAX_IMAGES:
        raise SchemaError("out-of-range", f"at most {MAX_IMAGES} images per request")
    top_k = request.get("top_k", 3)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
        raise SchemaError("out-of-range", "top_k must be 1..20")
    try:
        return [base64.b64decode(image, validate=True) for image in request["images"]], top_k
    except (binascii.Error, TypeError, ValueError) as exc:
        raise SchemaError("wrong-type", "images must be base64") from exc


def face_answer(face: dict[str, Any], top_k: int) -> dict[str, Any]:
    """One face of the response, with at most ``top_k`` candidates."""
    return {**face, "candidates": list(face["candidates"])[:top_k]}


def reply_address(message: paho.MQTTMessage) -> tuple[str | None, bytes | None]:
    """(response topic, correlation data) from the MQTT 5 properties, or from the JSON for MQTT 3 clients."""
    properties = getattr(message, "properties", None)
    topic = getattr(properties, "ResponseTopic", None)
    correlation = getattr(properties, "CorrelationData", None)
    if topic is None:
        try:
            request = json.loads(message.payload)
            topic = request.get("reply_to") if isinstance(request, dict) else None
            correlation = str(request.get("correlation", "")).encode() or None
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return None, None
    if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
        return None, None
    return topic, correlation


class IdentifyService:
    """Answers search-by-photo requests with the classifier's current gallery."""

    def __init__(
        self,
        connection: MqttConnection,
        topics: Topics,
        matcher: Callable[[], Matcher],
        analyzer: Callable[[], FaceAnalyzer],
        share_group: str,
    ) -> None:
        self.connection, self.topics = connection, topics
        self.matcher, self.analyzer, self.share_group = matcher, analyzer, share_group
        self._queue: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="identify-worker", daemon=True)

    def start(self) -> None:
        """Start the worker and subscribe (before connecting, like the other handlers)."""
        self._worker.start()
        self.connection.subscribe(f"$share/{self.share_group}/{self.topics.identify_request()}", self._queue.put)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._worker.join(timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._handle(message)

    def answer(self, payload: bytes) -> dict[str, Any]:
        """The response document for one request payload (pure apart from the models)."""
        try:
            images, top_k = parse_request(payload)
            matcher, analyzer = self.matcher(), self.analyzer()
            results = []
            for number, data in enumerate(images):
                faces = identify_image(analyzer, matcher, decode_image(data, f"image {number}"))
                results.append({"faces": [face_answer(face.to_dict(), top_k) for face in faces]})
            return {"ok": True, "results": results, "threshold": matcher.threshold}
        except (SchemaError, ImageError) as exc:
            return {"ok": False, "error": str(exc)}

    def _handle(self, message: paho.MQTTMessage) -> None:
        topic, correlation = reply_address(message)
        ack = lambda: self.connection.ack(message)  # noqa: E731 - acked once the answer is at the broker
        if topic is None:
            letter = {"service": "identify", "reason": "no-response-topic", "topic": message.topic}
            self.connection.publish(self.topics.deadletter("identify"), json.dumps(letter).encode(), on_acked=ack)
            return
        response = self.answer(bytes(message.payload))
        properties = Properties(PacketTypes.PUBLISH)
        if correlation is not None:
            properties.CorrelationData = correlation
            response["correlation"] = correlation.decode(errors="replace")
        log.info(kv("identify", ok=response["ok"], reply_to=topic))
        self.connection.publish(topic, json.dumps(response).encode(), on_acked=ack, properties=properties)


def encode_for_request(image: np.ndarray, max_side: int = 1280, quality: int = 90) -> str:
    """A photo as base64 JPEG, shrunk to ``max_side`` so a request stays well below the broker's packet limit."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(
            image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("cannot encode image as JPEG")
    return base64.b64encode(data.tobytes()).decode()


def request_identify(settings: MqttSettings, images: list[np.ndarray], top_k: int, timeout: float) -> dict[str, Any]:
    """Ask the running classifiers to identify ``images``; raise BrokerError when nobody answers in time."""
    topics = Topics(settings.topic_prefix)
    client = f"identify-{uuid.uuid4().hex[:12]}"
    reply_topic, correlation = topics.identify_response(client), uuid.uuid4().bytes
    answers: queue.Queue[bytes] = queue.Queue()

    def on_reply(message: paho.MQTTMessage) -> None:
        if getattr(message.properties, "CorrelationData", None) == correlation:
            answers.put(bytes(message.payload))

    connection = MqttConnection(settings, client)
    connection.subscribe(reply_topic, on_reply)
    connection.connect()
    try:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic, properties.CorrelationData = reply_topic, correlation
        payload = json.dumps({"images": [encode_for_request(image) for image in images], "top_k": top_k}).encode()
        connection.publish(topics.identify_request(), payload, properties=properties)
        try:
            return dict(json.loads(answers.get(timeout=timeout)))
        except queue.Empty:
            raise BrokerError(f"no classifier answered on {topics.identify_request()} within {timeout:g}s") from None
    finally:
        connection.close()
