"""The Frigate bridge: Frigate's person events in, facewire's names back as the event's ``sub_label``.

For each ``person`` event on ``<frigate prefix>/events`` (Frigate's MQTT, on the same broker), the
bridge fetches the event's snapshot (cropped to the person) through Frigate's HTTP API, runs the edge
pipeline on it (detect, align, embed), publishes the embeddings of every camera as the one node
named after its broker account (``frigate``: broker/acl lets it publish as no other node; the camera
is on the Frigate event and in the bridge's log line) and, when the classifiers name a known person,
sets the event's sub label through Frigate's HTTP API, as Double Take did. Each event id is handled
once; a token bucket bounds the events handled a minute (the others are dropped and counted); the
work runs on one worker thread behind a bounded queue.
Follows the Frigate 0.13 / 0.14 HTTP and MQTT documentation (docs/integrations.md).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass

from facewire.config import Settings
from facewire.errors import FacewireError, ImageError, SchemaError
from facewire.faces import FaceAnalyzer
from facewire.images import decode_image
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection
from facewire.schema import FaceEmbedding, FaceResult
from facewire.topics import Topics, valid_node_id

log = logging.getLogger(__name__)
SEEN_IDS = 10_000  # event ids remembered for de-duplication
QUEUE_SIZE = 32
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
NODE = "frigate"  # the node of a bridge without a broker login


@dataclass(frozen=True)
class PersonEvent:
    """The parts of a Frigate event the bridge uses."""

    id: str
    camera: str
    has_snapshot: bool


def person_event(payload: bytes) -> PersonEvent | None:
    """The person event of a ``frigate/events`` message, or None (another label, a false positive, junk)."""
    try:
        message = json.loads(payload)
        after = message["after"]
        event_id, camera = str(after["id"]), str(after["camera"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None
    if after.get("label") != "person" or after.get("false_positive") or not valid_node_id(camera):
        return None
    return PersonEvent(event_id, camera, bool(after.get("has_snapshot")))


class Bucket:
    """``per_minute`` events a minute, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.rate, self.capacity = per_minute / 60.0, float(per_minute)
        self.tokens, self.since = self.capacity, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.since) * self.rate)
        self.since = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class FrigateApi:
    """The two Frigate HTTP endpoints the bridge uses."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def _event_url(self, event_id: str, tail: str) -> str:
        return f"{self.url}/api/events/{urllib.parse.quote(event_id, safe='')}/{tail}"

    def snapshot(self, event: PersonEvent) -> bytes:
        """The event's snapshot cropped to the person (its thumbnail when Frigate keeps no snapshot)."""
        tail = "snapshot.jpg?crop=1&quality=95" if event.has_snapshot else "thumbnail.jpg"
        with urllib.request.urlopen(self._event_url(event.id, tail), timeout=self.timeout) as answer:
            return bytes(answer.read(MAX_SNAPSHOT_BYTES + 1))

    def set_sub_label(self, event_id: str, name: str, score: float) -> None:
        body = json.dumps({"subLabel": name[:100], "subLabelScore": round(score, 3)}).encode()
        request = urllib.request.Request(
            self._event_url(event_id, "sub_label"), body, {"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            answer.read()


class FrigateBridge:
    """Subscribes to Frigate's events and handles each person event once, on a worker thread."""

    def __init__(
        self, settings: Settings, analyzer: FaceAnalyzer, frigate: FrigateApi, prefix: str, per_minute: int
    ) -> None:
        self.analyzer, self.frigate, self.prefix = analyzer, frigate, prefix
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.node = settings.mqtt.username or NODE  # the broker lets an account publish as its own node only
        self.timeout = settings.gallery.command_timeout
        self.bucket = Bucket(per_minute)
        self.counts = {"handled": 0, "duplicate": 0, "rate-limited": 0, "queue-full": 0, "labelled": 0, "failed": 0}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._queue: queue.Queue[PersonEvent] = queue.Queue(QUEUE_SIZE)
        self._results: dict[tuple[str, int], FaceResult] = {}
        self._cond = threading.Condition()
        self._seq = time.time_ns() // 1000  # grows across restarts, as an edge node's sequence would
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="frigate-worker", daemon=True)
        self.connection = MqttConnection(settings.mqtt, f"facewire-frigate-{self._seq % 10**8}")
        self.connection.subscribe(f"{prefix}/events", self._on_event)
        self.connection.subscribe(self.topics.results(self.node), self._on_result)

    def start(self) -> None:
        self._worker.start()
        self.connection.connect()

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(10)
        self.connection.close()

    def _on_event(self, message: Message) -> None:
        event = person_event(bytes(message.payload))
        if event is None:
            return
        if event.id in self._seen:
            self.counts["duplicate"] += 1
            return
        if not self.bucket.take():
            self.counts["rate-limited"] += 1
            log.warning(kv("frigate-rate-limited", frigate_event=event.id, camera=event.camera))
            return
        self._seen[event.id] = None
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.counts["queue-full"] += 1

    def _on_result(self, message: Message) -> None:
        try:
            result = FaceResult.from_json(bytes(message.payload))
        except SchemaError:
            return
        with self._cond:
            self._results[result.key] = result
            self._cond.notify_all()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.handle(event)
            except (OSError, FacewireError) as exc:  # urllib's errors are OSErrors
                self.counts["failed"] += 1
                log.warning(kv("frigate-event-failed", frigate_event=event.id, error=str(exc)[:200]))

    def handle(self, event: PersonEvent) -> FaceResult | None:
        """Embed the event's faces, publish them, and label the event with the best known result."""
        data = self.frigate.snapshot(event)
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise ImageError(f"snapshot of {event.id} is larger than {MAX_SNAPSHOT_BYTES} bytes")
        faces = [
            f for f in self.analyzer.analyze(decode_image(data, f"snapshot {event.id}")) if f.embedding is not None
        ]
        node, model = self.node, self.analyzer.embedder.model_id
        sent = []
        for face in faces:
            if face.embedding is None:
                continue
            self._seq += 1
            track = self._seq  # each snapshot face is its own track: no averaging across events
            message = FaceEmbedding(
                node, self._seq, time.time(), 0, track, face.detection.bbox, face.detection.score,
                face.quality, model, face.embedding,
            )  # fmt: skip
            self.connection.publish(self.topics.embeddings(node), message.to_msgpack())
            sent.append((node, self._seq))
        results = [r for r in (self._wait(key) for key in sent) if r is not None]
        self.counts["handled"] += 1
        known = [r for r in results if r.known]
        if not known:
            log.info(kv("frigate-event", frigate_event=event.id, camera=event.camera, faces=len(faces), known=0))
            return None
        best = max(known, key=lambda r: r.score)
        self.frigate.set_sub_label(event.id, best.name, best.score)
        self.counts["labelled"] += 1
        score = round(best.score, 3)
        log.info(
            kv(
                "frigate-event",
                frigate_event=event.id,
                camera=event.camera,
                faces=len(faces),
                name=best.name,
                score=score,
            )
        )
        return best

    def _wait(self, key: tuple[str, int]) -> FaceResult | None:
        with self._cond:
            self._cond.wait_for(lambda: key in self._results, self.timeout)
            return self._results.pop(key, None)
