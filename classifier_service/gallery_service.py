"""The gallery's MQTT adapter: every replica applies every command from gallery/cmd, in order.

gallery/cmd is a normal (not shared) subscription, so each replica of the
$share group receives each command. Commands are applied one at a time on a
worker thread (never on the network thread); a command is acknowledged only
after its events (and forwarded commands) are at the broker, so a replica killed
mid-command gets it again on restart (persistent session) and, commands being
idempotent, converges on the same gallery version as the others.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from classifier_service.commands import parse_command
from classifier_service.core import DeadLetter
from classifier_service.gallery_manager import GalleryManager, log_event
from classifier_service.gallery_ops import apply_command
from facewire.errors import SchemaError
from facewire.logs import kv
from facewire.mqtt import MqttConnection
from facewire.topics import Topics

log = logging.getLogger(__name__)
SERVICE = "classifier"


class GalleryService:
    """Subscribes to gallery/cmd, applies commands, publishes gallery/events."""

    def __init__(
        self, manager: GalleryManager, connection: MqttConnection, topics: Topics, cache_file: Path | None
    ) -> None:
        self.manager = manager
        self.connection = connection
        self.topics = topics
        self.cache_file = cache_file
        self.applied = 0
        self._queue: queue.Queue[paho.MQTTMessage | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="gallery-worker", daemon=True)

    def start(self) -> None:
        self._worker.start()
        self.connection.subscribe(self.topics.gallery_cmd(), self._queue.put)

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._worker.join(timeout)

    def _work(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._handle(message)
            except Exception as exc:  # one bad command must not stop gallery management
                log.exception(kv("gallery-command-failed", topic=message.topic))
                self._fail(message, exc)

    def _handle(self, message: paho.MQTTMessage) -> None:
        payload = bytes(message.payload)
        try:
            command = parse_command(payload)
        except SchemaError as exc:
            log.warning(kv("dead-letter", reason=exc.reason, detail=exc.detail, topic=message.topic))
            letter = DeadLetter(exc.reason, exc.detail, message.topic, payload).to_json(SERVICE)
            self.connection.publish(self.topics.deadletter(SERVICE), letter, on_acked=lambda: self._ack(message))
            return
        started = time.perf_counter()
        outcome = apply_command(self.manager, command, self.cache_file)
        self.applied += 1
        outgoing = [(self.topics.gallery_cmd(), json.dumps(f).encode()) for f in outcome.forward]
        for event in outcome.events:
            event["apply_ms"] = round((time.perf_counter() - started) * 1000.0, 2)
            log_event(event)
            outgoing.append((self.topics.gallery_events(), json.dumps(event).encode()))
        pending = [len(outgoing)]
        lock = threading.Lock()

        def one_acked() -> None:
            with lock:
                pending[0] -= 1
                done = pending[0] == 0
            if done:
                self._ack(message)

        for topic, body in outgoing:
            self.connection.publish(topic, body, on_acked=one_acked)
        if not outgoing:
            self._ack(message)

    def _fail(self, message: paho.MQTTMessage, exc: Exception) -> None:
        """Answer a command that failed with an error event (so a waiting CLI does not hang), then ack it."""
        try:
            request = json.loads(message.payload).get("id", "-")
        except (ValueError, AttributeError):
            request = "-"
        event = {"v": 1, "event": "error", "id": request, "instance": self.manager.instance, "reason": "internal"}
        event["detail"] = f"{type(exc).__name__}: {exc}"[:200]
        self.connection.publish(
            self.topics.gallery_events(), json.dumps(event).encode(), on_acked=lambda: self._ack(message)
        )

    def _ack(self, message: paho.MQTTMessage) -> None:
        if message.qos > 0:
            self.connection.ack(message)
