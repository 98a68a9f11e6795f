"""The shared MQTT adapter of the results subscribers: decode, queue, ack once the effect is durable.

Construct the subscriber before connecting (it registers its subscription
first). The paho network thread only decodes and queues; a worker thread of the
subclass does the work and calls :meth:`ResultSubscriber.ack`. The broker's
receive-maximum bounds the queue. Acks of messages from an earlier
connection are dropped: the broker redelivers those, and every subscriber is
idempotent on (node, seq).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

from facewire.erasure import erasure_marker
from facewire.errors import SchemaError
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection, Will
from facewire.replay import ask_for_replay_when_messages_missed
from facewire.schema import DeadLetter, FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.schema.status import Detail, ServiceStatus
from facewire.topics import Topics

log = logging.getLogger(__name__)
SESSION_EXPIRY_SECONDS = 3600
RETRY_PAUSE = 1.0


@dataclass(frozen=True)
class Received:
    result: FaceResult
    message: Message
    epoch: int


def take_batch(source: queue.Queue[Received], most: int, wait: float, timeout: float) -> list[Received]:
    """Up to ``most`` items: block ``timeout`` for the first, then gather for at most ``wait`` seconds."""
    try:
        batch = [source.get(timeout=timeout)]
    except queue.Empty:
        return []
    deadline = time.monotonic() + wait
    while len(batch) < most:
        remaining = deadline - time.monotonic()
        try:
            batch.append(source.get(timeout=remaining) if remaining > 0 else source.get_nowait())
        except queue.Empty:
            break
    return batch


class ResultSubscriber(ABC):
    """Subscribes to results (optionally shared), hands decoded results to :meth:`work` on a worker thread."""

    service = "subscriber"

    def __init__(
        self,
        connection: MqttConnection,
        topics: Topics,
        instance: str,
        share_group: str,
        stored_until: float | None = None,
    ) -> None:
        """``stored_until``: when the newest result this subscriber had stored in an earlier run was made (None:
        it does not know), so a restart whose session the broker lost asks for what came since."""
        self.connection = connection
        self.topics = topics
        self.instance = instance
        self.share_group = share_group
        self.inbox: queue.Queue[Received] = queue.Queue()
        self.deadletters = 0
        self._epoch = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work_loop, name=f"{self.service}-worker", daemon=True)
        connection.on_connection_change = self._on_connection_change
        # Subscribed before connecting: a resumed session delivers its queued messages right after the
        # CONNACK, and a message without a handler would be acked by the connection's default handler.
        connection.subscribe(self.topics.results_shared(share_group), self._on_message)
        # Not shared: every replica erases a forgotten person from what it stores.
        connection.subscribe(self.topics.gallery_events(), self._on_gallery_event)
        # A broker that crashed before snapshotting this session forgot the subscription: ask for the results
        # published before the new SUBSCRIBE again (every subscriber is idempotent on (node, seq)).
        connection.resume_after = stored_until
        ask_for_replay_when_messages_missed(connection, topics, f"{self.service}-{instance}")
        self.erased: dict[str, str] = {}  # person -> erasure marker, applied to results still in flight
        self._erasures: queue.Queue[tuple[str, Message, int]] = queue.Queue()

    @property
    def status_topic(self) -> str:
        return self.topics.service_status(self.service, self.instance)

    def will(self) -> Will:
        return Will(self.status_topic, ServiceStatus(self.instance, "offline").to_json())

    def status(self, state: str) -> bytes:
        details: dict[str, Detail] = {"deadletters": self.deadletters} | self.counters()
        return ServiceStatus(self.instance, state, time.time(), details).to_json()

    def counters(self) -> dict[str, Detail]:
        """Service-specific numbers for the status message."""
        return {}

    def start(self) -> None:
        """Start the worker and announce the service; the connection must be connected."""
        self._worker.start()
        self.heartbeat()

    def heartbeat(self) -> None:
        self.connection.publish(self.status_topic, self.status("online"), retain=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish queued work, wait for outstanding publishes, announce offline, disconnect."""
        self._stop.set()
        self._worker.join(timeout)
        deadline = time.monotonic() + timeout
        while self.connection.tracker.outstanding and time.monotonic() < deadline:
            time.sleep(0.02)
        self.connection.close(final=Will(self.status_topic, self.status("offline")))

    def ack(self, item: Received) -> None:
        """Acknowledge ``item`` if it came on the current connection (else the broker redelivers it)."""
        self._ack_message(item.message, item.epoch)

    def _ack_message(self, message: Message, epoch: int) -> None:
        if epoch == self._epoch and message.qos > 0:
            self.connection.ack(message)

    @abstractmethod
    def erase(self, person: str, marker: str) -> None:
        """Replace a forgotten person by its erasure marker in what this subscriber stores."""

    def scrub(self, result: FaceResult) -> FaceResult:
        """``result`` with forgotten people replaced by their markers (for results still in flight)."""
        if not self.erased or not ({result.name} | {c.name for c in result.candidates}) & self.erased.keys():
            return result
        return replace(
            result,
            name=self.erased.get(result.name, result.name),
            candidates=tuple(replace(c, name=self.erased.get(c.name, c.name)) for c in result.candidates),
        )

    @abstractmethod
    def work(self, timeout: float) -> None:
        """Take what is queued in :attr:`inbox` (waiting at most ``timeout``), do it, ack it."""

    def _work_loop(self) -> None:
        while not self._stop.is_set() or not self.inbox.empty():
            try:
                self._erase_pending()
                self.work(0.2)
            except Exception:  # the worker must outlive a bad batch; the broker redelivers what was not acked
                log.exception(kv("worker-failed", service=self.service))
                time.sleep(1.0)

    def _erase_pending(self) -> None:
        while not self._erasures.empty():
            person, message, epoch = self._erasures.get()
            marker = erasure_marker(person)
            self.erased[person] = marker
            self.erase(person, marker)
            log.info(kv("person-erased", service=self.service, marker=marker))
            self._ack_message(message, epoch)

    def _on_gallery_event(self, message: Message) -> None:
        try:
            event: GalleryEvent | None = GalleryEvent.from_json(message.payload)
        except SchemaError:
            event = None
        person = event.get("person") if event is not None and event.event == "forgotten" else None
        if isinstance(person, str) and person:
            self._erasures.put((person, message, self._epoch))
        else:
            self._ack_message(message, self._epoch)

    def retry_later(self, items: list[Received], error: Exception) -> None:
        """Put ``items`` back after a failed write (they stay unacknowledged) and pause before the next try."""
        log.error(kv("write-failed", service=self.service, items=len(items), error=str(error)[:160]))
        for item in items:
            self.inbox.put(item)
        self._stop.wait(RETRY_PAUSE)

    def _on_message(self, message: Message) -> None:
        payload = message.payload
        try:
            result = FaceResult.from_json(payload)
            topic_node = self.topics.node_of(message.topic, "results")
            if topic_node != result.node:
                raise SchemaError("node-mismatch", f"topic says {topic_node!r}, payload says {result.node!r}")
        except SchemaError as exc:
            self._dead_letter(message, DeadLetter(exc.reason, exc.detail, message.topic, payload))
            return
        except Exception as exc:  # any other failure too: dead-lettered and acked, never redelivered forever
            detail = f"{type(exc).__name__}: {exc}"[:200]
            self._dead_letter(message, DeadLetter("handler-error", detail, message.topic, payload))
            return
        self.inbox.put(Received(result, message, self._epoch))

    def _dead_letter(self, message: Message, letter: DeadLetter) -> None:
        self.deadletters += 1
        log.warning(kv("dead-letter", service=self.service, reason=letter.reason, topic=letter.topic))
        epoch = self._epoch
        self.connection.publish(
            self.topics.deadletter(self.service),
            letter.to_json(self.service),
            on_acked=lambda: self._ack_message(message, epoch),
        )

    def _on_connection_change(self, connected: bool) -> None:
        if not connected:
            self._epoch += 1
