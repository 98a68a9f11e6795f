"""The gallery's MQTT adapter: every replica applies every command from gallery/cmd, in order.

gallery/cmd is a normal (not shared) subscription, so each replica of the
$share group receives each command. Commands are applied one at a time on a
worker thread (never on the network thread); a command is acknowledged only
after its events (and forwarded commands) are at the broker, so a replica killed
mid-command gets it again on restart (persistent session) and, commands being
idempotent, converges on the same gallery version as the others.

With the shared gallery (PostgreSQL) a command that changes it is applied once:
the replica that claims it first applies it in one transaction and answers; the
others apply nothing, and each publishes ``served`` (with the version) once its
follower serves the change.

The events subscribers must act on (``forgotten``: erase the person; ``renamed``) are remembered and
published again after a reconnect and on a replay request (facewire.replay): a broker that crashed
before its next snapshot lost them for subscribers that had not received them yet.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from classifier_service import index_choice
from classifier_service.gallery.authority import ANONYMOUS_REPLICA, command_actor
from classifier_service.gallery.changes import Change
from classifier_service.gallery.manager import GalleryManager, log_event
from classifier_service.gallery.operations import Outcome, apply_once
from classifier_service.workers import guarded_thread
from facewire.errors import SchemaError
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection
from facewire.replay import lost_since
from facewire.schema import DeadLetter
from facewire.schema.gallery import GalleryCommand, GalleryEvent
from facewire.topics import Topics

log = logging.getLogger(__name__)
SERVICE = "classifier"
REPLAYED_EVENTS = frozenset({"forgotten", "renamed"})  # what subscribers act on: published again after a crash
EVENTS_REMEMBERED = 1000


class GalleryService:
    """Subscribes to gallery/cmd, applies commands, publishes gallery/events."""

    def __init__(
        self,
        manager: GalleryManager,
        connection: MqttConnection,
        topics: Topics,
        cache_file: Path | None,
        on_worker_death: Callable[[str], None] = lambda name: None,
        resend_seconds: float = 30.0,
    ) -> None:
        """``resend_seconds``: after a reconnect, publish again the events from this long before the
        connection was lost (``classifier.resend_seconds``)."""
        self.manager = manager
        self.connection = connection
        self.topics = topics
        self.cache_file = cache_file
        self.account = connection.settings.username or ANONYMOUS_REPLICA  # its own command topic
        self.applied = 0
        self._queue: queue.Queue[tuple[Message, int] | None] = queue.Queue()
        keep_threads = index_choice.thread_count_keeper()  # commands build indexes with the service's count

        def work() -> None:
            keep_threads()
            self._work()

        self._worker = guarded_thread("gallery-worker", work, on_worker_death)
        self._epoch = 0
        self._request: str | None = None  # id of the command being applied (None: not parsed yet)
        self._recent: deque[tuple[float, bytes]] = deque(maxlen=EVENTS_REMEMBERED)  # (published at, event)
        self._recent_lock = threading.Lock()
        previous = connection.on_connection_change  # the classifier's; both must hear about reconnects

        def changed(connected: bool) -> None:
            if previous is not None:
                previous(connected)
            if not connected:
                self._epoch += 1
            elif connection.lost_at is not None and resend_seconds > 0:
                self.replay_events(lost_since(connection.lost_at, connection.settings.keepalive, resend_seconds))

        connection.on_connection_change = changed
        manager.on_served = self._served

    def start(self) -> None:
        self.manager.start_following()
        self._worker.start()
        self.connection.subscribe(self.topics.gallery_cmd_all(), lambda m: self._queue.put((m, self._epoch)))

    def replay_events(self, since: float) -> None:
        """Publish again the remembered ``forgotten`` and ``renamed`` events published at or after ``since``."""
        with self._recent_lock:
            again = [payload for published, payload in self._recent if published >= since]
        for payload in again:
            self.connection.publish(self.topics.gallery_events(), payload)
        if again:
            log.info(kv("gallery-events-replayed", count=len(again)))

    def _publish_event(self, event: GalleryEvent, on_acked: Callable[[], None] | None = None) -> None:
        payload = event.to_json()
        if event.event in REPLAYED_EVENTS:
            with self._recent_lock:
                self._recent.append((time.time(), payload))
        self.connection.publish(self.topics.gallery_events(), payload, on_acked=on_acked)

    def request_sync(self) -> None:
        """Ask the other replicas for their gallery (a new replica joining the group does this once)."""
        instance = self.manager.instance
        command = GalleryCommand(
            "sync", f"sync-{instance}-{int(time.time())}", f"replica:{instance}", requester=instance
        )
        self.connection.publish(self.topics.gallery_cmd(self.account), command.to_json())
        log.info(kv("gallery-sync-requested", instance=self.manager.instance))

    def stop(self, timeout: float = 10.0) -> None:
        self.manager.stop_following()
        self._queue.put(None)
        self._worker.join(timeout)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            message, epoch = item
            ack = self._acker(message, epoch)
            try:
                self._handle(message, ack)
            except Exception as exc:  # one bad command must not stop gallery management
                log.exception(kv("gallery-command-failed", topic=message.topic))
                self._fail(message, ack, exc)

    def _handle(self, message: Message, ack: Callable[[], None]) -> None:
        payload = message.payload
        self._request = None
        try:
            command = GalleryCommand.from_json(payload)
        except SchemaError as exc:
            self._dead_letter(message, ack, exc.reason, exc.detail)
            return
        actor = command_actor(self.topics, message.topic, command, self.account)
        if actor is None:
            self._dead_letter(message, ack, "not-allowed", f"op {command.op} is not accepted on {message.topic}")
            return
        command = replace(command, actor=actor)
        self._request = command.id
        started = time.perf_counter()
        outcome = self._apply(message, command)
        self.applied += 1
        forwards = [forward.to_json() for forward in outcome.forward]
        events = []
        for event in outcome.events:
            apply_ms = round((time.perf_counter() - started) * 1000.0, 2)
            event = replace(event, details=event.details | {"apply_ms": apply_ms})
            log_event(event)
            events.append(event)
        total = len(forwards) + len(events)
        pending = [total]
        lock = threading.Lock()

        def one_acked() -> None:
            with lock:
                pending[0] -= 1
                done = pending[0] == 0
            if done:
                ack()

        for body in forwards:
            self.connection.publish(self.topics.gallery_cmd(self.account), body, on_acked=one_acked)
        for event in events:
            self._publish_event(event, one_acked)
        if not total:
            ack()

    def _apply(self, message: Message, command: GalleryCommand) -> Outcome:
        """Apply ``command``; one that changes a shared gallery only if this replica claims it, its events then
        carry the version served once it committed."""
        key = hashlib.sha256(message.topic.encode() + b"\0" + message.payload).hexdigest()
        return apply_once(self.manager, command, key, self.cache_file)

    def _served(self, changes: list[Change], version: str) -> None:
        """Changes other replicas committed are served here now: one ``served`` event per command."""
        for command in dict.fromkeys(c.command for c in changes):
            event = replace(self.manager.served(command), gallery_version=version)
            log_event(event)
            self._publish_event(event)

    def _dead_letter(self, message: Message, ack: Callable[[], None], reason: str, detail: str) -> None:
        log.warning(kv("dead-letter", reason=reason, detail=detail, topic=message.topic))
        letter = DeadLetter(reason, detail, message.topic, message.payload).to_json(SERVICE)
        self.connection.publish(self.topics.deadletter(SERVICE), letter, on_acked=ack)

    def _fail(self, message: Message, ack: Callable[[], None], exc: Exception) -> None:
        """A command that failed: dead-letter it before parsing, else answer with an error event (so a waiting
        CLI does not hang); acked either way. The payload is never parsed again here."""
        detail = f"{type(exc).__name__}: {exc}"[:200]
        request, self._request = self._request, None
        try:
            if request is None:
                self._dead_letter(message, ack, "internal-error", detail)
                return
            details = {"reason": "internal", "detail": detail}
            event = GalleryEvent("error", request, self.manager.instance, details=details)
            self.connection.publish(self.topics.gallery_events(), event.to_json(), on_acked=ack)
        except Exception:
            log.exception(kv("gallery-failure-unreported", topic=message.topic))
            ack()

    def _acker(self, message: Message, epoch: int) -> Callable[[], None]:
        """Acknowledge ``message`` if still on the connection it came on (else the broker redelivers it)."""

        def ack() -> None:
            if message.qos > 0 and epoch == self._epoch:
                self.connection.ack(message)

        return ack
