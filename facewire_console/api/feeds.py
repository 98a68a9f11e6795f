"""What the API keeps from the broker: classifier status, node status, threshold statistics, its own results.

One MQTT connection, opened with the app: retained status messages arrive as
they change, so a query reads memory instead of waiting on the broker.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from typing import Any

from alert_service.nodes import NodeRegistry, parse_status
from facewire.config import Settings
from facewire.errors import SchemaError
from facewire.mqtt import Message, MqttConnection, Refusal
from facewire.schema import FaceEmbedding, FaceResult
from facewire.topics import Topics

API_NODE = "api"  # embeddings sent to /recognize are published as this node


class Feeds:
    """The retained state the API serves, and the results of the embeddings it sent."""

    def __init__(self, settings: Settings) -> None:
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.nodes = NodeRegistry(settings.nodes.stale_after)
        self.classifiers: dict[str, dict[str, Any]] = {}
        self.thresholds: dict[str, Any] | None = None
        self._results: dict[int, FaceResult] = {}
        self._cond = threading.Condition()
        client_id = f"facewire-api-{uuid.uuid4().hex[:8]}"
        self.reply_topic = self.topics.identify_response(client_id)
        self._answers: dict[bytes, dict[str, Any]] = {}
        self.connection = MqttConnection(settings.mqtt, client_id)
        self.connection.subscribe(self.topics.node_status_all(), self._on_node)
        self.connection.subscribe(self.topics.service_status("classifier", "+"), self._on_classifier)
        self.connection.subscribe(self.topics.stats_thresholds(), self._on_stats)
        self.connection.subscribe(self.topics.results(API_NODE), self._on_result)
        self.connection.subscribe(self.reply_topic, self._on_answer)

    def start(self) -> None:
        self.connection.connect_in_background()

    def stop(self) -> None:
        self.connection.close()

    def _on_node(self, message: Message) -> None:
        parsed = parse_status(message.topic, bytes(message.payload)) if message.payload else None
        if parsed is not None:
            with self._cond:
                self.nodes.update(parsed[0], parsed[1], time.time())

    def _on_classifier(self, message: Message) -> None:
        instance = message.topic.split("/")[-2]
        try:
            status = json.loads(message.payload) if message.payload else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        with self._cond:
            if isinstance(status, dict):
                self.classifiers[instance] = status
            else:
                self.classifiers.pop(instance, None)

    def _on_stats(self, message: Message) -> None:
        try:
            report = json.loads(message.payload) if message.payload else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        self.thresholds = report if isinstance(report, dict) else None

    def _on_result(self, message: Message) -> None:
        try:
            result = FaceResult.from_json(bytes(message.payload))
        except SchemaError:
            return
        with self._cond:
            self._results[result.seq] = result
            self._cond.notify_all()

    def node_views(self) -> list[dict[str, Any]]:
        """Every node heard from, as ``facewire nodes --json`` shows it."""
        with self._cond:
            return [view.__dict__ for view in self.nodes.views(time.time())]

    def _on_answer(self, message: Message) -> None:
        correlation = message.correlation_data
        try:
            answer = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return
        if isinstance(correlation, bytes) and isinstance(answer, dict):
            with self._cond:
                self._answers[correlation] = answer
                self._cond.notify_all()

    def identify(self, jpeg: bytes, top_k: int, timeout: float) -> dict[str, Any] | None:
        """The classifiers' search-by-photo answer for one JPEG (MQTT 5 request/response), or None after
        ``timeout``."""
        correlation = uuid.uuid4().bytes
        payload = json.dumps({"images": [base64.b64encode(jpeg).decode()], "top_k": top_k}).encode()
        self.connection.publish(
            self.topics.identify_request(), payload, response_topic=self.reply_topic, correlation_data=correlation
        )
        with self._cond:
            self._cond.wait_for(lambda: correlation in self._answers, timeout)
            return self._answers.pop(correlation, None)

    def online(self) -> list[dict[str, Any]]:
        """Status of the classifier replicas that are online."""
        with self._cond:
            return [s for s in self.classifiers.values() if s.get("state") == "online"]

    def classify(self, face: FaceEmbedding, timeout: float) -> FaceResult | Refusal | None:
        """Publish ``face`` as node ``api``; the classifier's result, the broker's refusal (its ACL), or None
        after ``timeout``."""
        refusals: list[Refusal] = []

        def refused(refusal: Refusal) -> None:
            with self._cond:
                refusals.append(refusal)
                self._cond.notify_all()

        self.connection.publish(self.topics.embeddings(API_NODE), face.to_msgpack(), on_refused=refused)
        with self._cond:
            self._cond.wait_for(lambda: face.seq in self._results or bool(refusals), timeout)
            return refusals[0] if refusals else self._results.pop(face.seq, None)
