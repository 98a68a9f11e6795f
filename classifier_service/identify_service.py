"""Search by photo over MQTT: requests on ``facewire/identify/req``, answers on the request's response topic.

A request is JSON ``{"images": [base64, ...], "top_k": 3}`` published with the MQTT 5 properties
ResponseTopic and CorrelationData (MQTT 3.1.1 clients put ``"reply_to"`` and ``"correlation"`` in the
JSON instead). The replicas share the request subscription, so one of them answers, with the gallery
it serves at that moment. Requests are handled on a worker thread, never on the MQTT network thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np

from classifier_service.identify import Identification, identify_image
from classifier_service.matcher import Matcher
from classifier_service.workers import guarded_thread
from facewire.config import MqttSettings
from facewire.errors import BrokerError, ImageError, SchemaError
from facewire.faces import FaceAnalyzer
from facewire.images import decode_image
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection, Refusal
from facewire.schema import DeadLetter
from facewire.schema.identify import IdentifiedFace, IdentifyRequest, IdentifyResponse
from facewire.topics import Topics

log = logging.getLogger(__name__)


def reply_address(message: Message, request: IdentifyRequest | None) -> tuple[str | None, bytes | None]:
    """(response topic, correlation data): the MQTT 5 properties, else the request's ``reply_to`` (MQTT 3)."""
    topic, correlation = message.response_topic, message.correlation_data
    if topic is None and request is not None and request.reply_to:
        topic, correlation = request.reply_to, request.correlation.encode() or None
    if not topic or "+" in topic or "#" in topic:
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
        quality_slopes: tuple[float, float, float] | None = None,
        on_worker_death: Callable[[str], None] = lambda name: None,
    ) -> None:
        """``quality_slopes``: the classifier's ``classifier.quality_slopes`` (None: that setting's default);
        ``on_worker_death``: called if the worker thread dies (the process then exits: classifier_service.workers)."""
        self.connection, self.topics = connection, topics
        self.quality_slopes = quality_slopes
        self.matcher, self.analyzer, self.share_group = matcher, analyzer, share_group
        self._queue: queue.Queue[Message] = queue.Queue()
        self._stop = threading.Event()
        self._worker = guarded_thread("identify-worker", self._work, on_worker_death)

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

    def answer(self, request: IdentifyRequest) -> IdentifyResponse:
        """The response to one request (pure apart from the models)."""
        try:
            matcher, analyzer = self.matcher(), self.analyzer()
            results = []
            for number, data in enumerate(request.images):
                image = decode_image(data, f"image {number}")
                faces = identify_image(analyzer, matcher, image, self.quality_slopes)
                results.append(tuple(_answer(face, request.top_k) for face in faces))
            return IdentifyResponse(True, tuple(results), matcher.threshold)
        except ImageError as exc:
            return IdentifyResponse(False, error=str(exc))
        except Exception as exc:  # one request must not stop search by photo: answered with the error, acked
            log.exception(kv("identify-failed", images=len(request.images)))
            return IdentifyResponse(False, error=f"internal error: {type(exc).__name__}: {exc}"[:200])

    def _handle(self, message: Message) -> None:
        ack = lambda: self.connection.ack(message)  # noqa: E731 - acked once the answer is at the broker
        try:
            request: IdentifyRequest | None = IdentifyRequest.from_json(message.payload)
            refusal = ""
        except SchemaError as exc:
            request, refusal = None, str(exc)
        topic, correlation = reply_address(message, request)
        if topic is None:
            letter = DeadLetter("no-response-topic", refusal, message.topic, message.payload)
            self.connection.publish(self.topics.deadletter("identify"), letter.to_json("identify"), on_acked=ack)
            return
        response = self.answer(request) if request is not None else IdentifyResponse(False, error=refusal)
        if request is not None and request.correlation and message.correlation_data is None:
            response = replace(response, correlation=request.correlation)  # an MQTT 3.1.1 client's, as it sent it
        log.info(kv("identify", ok=response.ok, reply_to=topic))

        def refused(refusal: Refusal) -> None:
            # The broker will not let us answer there (the requester chose a topic the classifier may not write):
            # retrying cannot help, and unacked the request would hold one of the connection's receive slots.
            self.connection.log_refusal(refusal)
            detail = f"{refusal.topic}: {refusal.reason}"[:200]
            letter = DeadLetter("reply-refused", detail, message.topic, message.payload)
            self.connection.publish(self.topics.deadletter("identify"), letter.to_json("identify"), on_acked=ack)

        self.connection.publish(
            topic, response.to_json(), on_acked=ack, correlation_data=correlation, on_refused=refused
        )


def _answer(face: Identification, top_k: int) -> IdentifiedFace:
    """One face of the response, with at most ``top_k`` candidates."""
    return IdentifiedFace(face.bbox, face.det, face.name, face.score, face.known, face.candidates[:top_k])


def encode_for_request(image: np.ndarray, max_side: int = 1280, quality: int = 90) -> bytes:
    """A photo as JPEG, shrunk to ``max_side`` so a request stays well below the broker's packet limit."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(
            image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError("cannot encode image as JPEG")
    return data.tobytes()


def request_identify(settings: MqttSettings, images: list[np.ndarray], top_k: int, timeout: float) -> IdentifyResponse:
    """Ask the running classifiers to identify ``images``; raise BrokerError when nobody answers in time."""
    topics = Topics(settings.topic_prefix)
    client = f"identify-{uuid.uuid4().hex[:12]}"
    reply_topic, correlation = topics.identify_response(client), uuid.uuid4().bytes
    answers: queue.Queue[bytes] = queue.Queue()

    def on_reply(message: Message) -> None:
        if message.correlation_data == correlation:
            answers.put(message.payload)

    connection = MqttConnection(settings, client)
    connection.subscribe(reply_topic, on_reply)
    connection.connect()
    try:
        request = IdentifyRequest(tuple(encode_for_request(image) for image in images), top_k)
        connection.publish(
            topics.identify_request(), request.to_json(), response_topic=reply_topic, correlation_data=correlation
        )
        try:
            return IdentifyResponse.from_json(answers.get(timeout=timeout))
        except queue.Empty:
            raise BrokerError(f"no classifier answered on {topics.identify_request()} within {timeout:g}s") from None
    finally:
        connection.close()
