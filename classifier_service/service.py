"""The classifier's MQTT adapter: shared subscription in, results and dead letters out.

Messages arrive with manual acknowledgement. Each inbound message is acked only
after the broker has acknowledged its result (or its dead letter), so a crash
at any point leads to redelivery, never to a lost face; redelivered messages
are answered from the core's memory of recent keys. A result the broker took
with no subscriber for it (PUBACK 0x10) is published again after a back-off
(classifier_service.unheard); one the broker refuses (>= 0x80) is published again
until it takes it, and only then is its embedding acked (classifier_service.refused).

After a reconnect the classifier re-publishes its recent results: a crashed broker lost what it took
since its last snapshot (facewire.replay). A results subscriber whose session the broker lost asks for
them again on ``<prefix>/replay/results``; every replica serves such requests, at most one replay every
``REPLAY_PAUSE`` seconds (a flood of requests is one replay), reaching back ``replay_max_seconds`` at most.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from classifier_service import index_choice
from classifier_service.core import Arrival, Classifier, Decision, Rejection
from classifier_service.fair_queue import FairQueue
from classifier_service.refused import RefusedResults
from classifier_service.unheard import UnheardResults
from classifier_service.workers import guarded_thread
from facewire.config import ClassifierSettings
from facewire.errors import SchemaError
from facewire.logs import kv, moment
from facewire.mqtt import Message, MqttConnection, Refusal, Will
from facewire.replay import lost_since
from facewire.schema import DeadLetter, FaceEmbedding, FaceResult
from facewire.schema.replay import ReplayRequest
from facewire.schema.status import Detail, ServiceStatus
from facewire.topics import Topics

log = logging.getLogger(__name__)
SERVICE = "classifier"
REPLAY_PAUSE = 2.0  # seconds between two replays for subscribers whose session the broker lost
BLAS_FROM = 4  # probes in a batch from which FAISS searches a flat index with one matrix product
# Python's cyclic garbage collector: generation 0 every 20,000 allocations instead of 700. Each message
# allocates dozens of objects and the classifier keeps up to ``memory`` results alive, which every older
# generation's pass walks; at the default the classifier spent 10-20 % more CPU per message (BENCHMARKS.md).
GC_THRESHOLDS = (20_000, 20, 100)


def faiss_for_worker(dim: int) -> Callable[[], None]:
    """Have FAISS search a batch of ``BLAS_FROM`` or more probes of ``dim`` dimensions as one BLAS matrix
    product; returns what the worker thread calls first to search with this thread's OpenMP thread count.

    FAISS takes the BLAS path only from ``distance_compute_blas_threshold`` probes x dimensions (128,000 by
    default: 1,000 SFace probes); below, it scans probe by probe. At a 10k-row flat gallery the product costs
    0.05 ms per probe in a batch of 64 against 0.18 ms probe by probe, and is no slower from 4 probes
    (BENCHMARKS.md, issue 21). OpenMP keeps the thread count per thread: the worker would otherwise use every
    core whatever ``classifier.faiss_threads`` says.
    """
    import faiss  # the `server` extra

    faiss.cvar.distance_compute_blas_threshold = BLAS_FROM * dim
    return index_choice.thread_count_keeper()


@dataclass(frozen=True)
class Incoming:
    """One embedding message as it came off the wire."""

    topic: str
    payload: bytes
    received: float


def decode(topics: Topics, message: Incoming) -> FaceEmbedding:
    """The embedding in ``message``, from the node its topic names; SchemaError otherwise."""
    embedding = FaceEmbedding.from_msgpack(message.payload)
    topic_node = topics.node_of(message.topic, "embeddings")
    if topic_node != embedding.node:
        raise SchemaError("node-mismatch", f"topic says {topic_node!r}, payload says {embedding.node!r}")
    return embedding


def decide(classifier: Classifier, topics: Topics, batch: list[Incoming]) -> list[FaceResult | DeadLetter]:
    """One outcome per message, in order: the core's result, or a dead letter saying why not.

    Never raises because of one message: a failure nobody foresaw dead-letters that message
    (reason ``internal-error``) and the rest of the batch is still classified.
    """
    letters: dict[int, DeadLetter] = {}
    arrivals: dict[int, Arrival] = {}
    for index, message in enumerate(batch):
        try:
            arrivals[index] = Arrival(decode(topics, message), message.received)
        except SchemaError as exc:
            letters[index] = DeadLetter(exc.reason, exc.detail, message.topic, message.payload)
        except Exception as exc:
            letters[index] = DeadLetter("internal-error", _described(exc), message.topic, message.payload)
    results: dict[int, FaceResult] = {}
    for index, decision in zip(arrivals, _classify(classifier, list(arrivals.values())), strict=True):
        if isinstance(decision, Rejection):
            message = batch[index]
            letters[index] = DeadLetter(decision.reason, decision.detail, message.topic, message.payload)
        else:
            results[index] = decision
    return [letters[index] if index in letters else results[index] for index in range(len(batch))]


def _classify(classifier: Classifier, arrivals: list[Arrival]) -> list[Decision]:
    """The core's decisions; if the batch fails, one by one, so only the message at fault is rejected."""
    try:
        return classifier.classify(arrivals)
    except Exception:
        log.exception(kv("batch-failed", size=len(arrivals)))
    decisions: list[Decision] = []
    for arrival in arrivals:
        try:
            decisions.extend(classifier.classify([arrival]))
        except Exception as exc:
            decisions.append(Rejection("internal-error", _described(exc)))
    return decisions


def result_json(result: FaceResult) -> bytes:
    """``result.to_json()``'s JSON object, encoded by orjson: a third of json.dumps's cost per result here
    (the schema's fields are finite and within int64, so orjson never meets a value json would refuse)."""
    return orjson.dumps(result.to_dict())


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


@dataclass
class ServiceCounters:
    results: int = 0
    deadletters: int = 0
    batches: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class ClassifierService:
    """Feeds the fair queue from MQTT, classifies in micro-batches on a worker thread, publishes."""

    def __init__(
        self,
        classifier: Classifier,
        connection: MqttConnection,
        topics: Topics,
        settings: ClassifierSettings,
        instance: str,
        on_worker_death: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.classifier = classifier
        self.connection = connection
        self.topics = topics
        self.settings = settings
        self.instance = instance
        self.queue: FairQueue[tuple[Incoming, Message, int]] = FairQueue(settings.queue_max)
        self.counters = ServiceCounters()
        self.unheard = UnheardResults()
        self.refused = RefusedResults()
        self._epoch = 0
        self._stop = threading.Event()
        self._republish = threading.Event()
        self._connected_at = 0.0
        self._replay_lock = threading.Lock()
        self._replay_since: float | None = None  # earliest result a pending replay request asks for
        self._replayed_at = -REPLAY_PAUSE
        self.on_replay: Callable[[float], None] = lambda since: None  # the gallery's events replay too
        self._keep_threads: Callable[[], None] = lambda: None
        self._worker = guarded_thread("classifier-worker", self._work, on_worker_death)
        connection.on_connection_change = self._on_connection_change

    def will(self) -> Will:
        return Will(self.status_topic, ServiceStatus(self.instance, "offline").to_json())

    @property
    def status_topic(self) -> str:
        return self.topics.service_status(SERVICE, self.instance)

    def status(self, state: str) -> bytes:
        details: dict[str, Detail] = {
            "model": self.classifier.model_id,
            "gallery_version": self.classifier.gallery_version,
            "gallery_size": len(self.classifier.matcher.labels),
            "people": len(set(self.classifier.matcher.labels)),
            "threshold": self.classifier.matcher.threshold,
            "results": self.counters.results,
            "deadletters": self.counters.deadletters,
            "deadletter_reasons": dict(self.counters.reasons),
            "results_retrying": len(self.unheard),
            "results_unheard": self.unheard.given_up,
            "results_refused": len(self.refused),
            "queue": self.queue.depths(),
        }
        return ServiceStatus(self.instance, state, time.time(), details).to_json()

    def start(self) -> None:
        """Start the worker and register the shared subscription (and set the process's garbage collector to
        ``GC_THRESHOLDS``). Call before connecting: a resumed session's queued embeddings arrive right after
        CONNACK and must find their handler."""
        self._keep_threads = faiss_for_worker(self.classifier.dim)
        gc.set_threshold(*GC_THRESHOLDS)
        self._worker.start()
        self.connection.subscribe(self.topics.embeddings_shared(self.settings.share_group), self._on_message)
        self.connection.subscribe(self.topics.results_replay(), self._on_replay_request)

    def announce(self) -> None:
        """Publish the retained online status (after connecting)."""
        self.heartbeat()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, wait for outstanding acks, announce offline."""
        self._stop.set()
        self._worker.join(timeout)
        deadline = time.monotonic() + timeout
        while self.connection.unsettled and time.monotonic() < deadline:
            time.sleep(0.02)
        self.connection.close(final=Will(self.status_topic, self.status("offline")))

    def heartbeat(self) -> None:
        """Publish the retained status: online only while the worker runs."""
        state = "online" if self._worker.is_alive() else "offline"
        self.connection.publish(self.status_topic, self.status(state), retain=True)

    def _on_message(self, message: Message) -> None:
        node = self.topics.node_of(message.topic, "embeddings") or "?"
        self.queue.put(node, (Incoming(message.topic, message.payload, time.time()), message, self._epoch))

    def _work(self) -> None:
        self._keep_threads()
        while not self._stop.is_set() or len(self.queue):
            if self._republish.is_set():
                self._republish.clear()
                self._republish_recent()
            self._replay_requested()
            self._republish_unheard()
            self._republish_refused()
            items = self.queue.take(self.settings.batch_max, self.settings.batch_wait_ms / 1000.0, timeout=0.2)
            if items:
                self._handle(items)

    def _handle(self, items: list[tuple[Incoming, Message, int]]) -> None:
        outcomes = decide(self.classifier, self.topics, [incoming for incoming, _, _ in items])
        self.counters.batches += 1
        for (_, message, epoch), outcome in zip(items, outcomes, strict=True):
            ack = self._acker(message, epoch)
            if isinstance(outcome, FaceResult):
                self.counters.results += 1
                self._publish_result(outcome, 0, on_acked=ack, on_unheard=ack)
                continue
            self._dead_letter(outcome, ack)

    def _publish_result(
        self, result: FaceResult, attempt: int, on_acked: Callable[[], None] | None, on_unheard: Callable[[], None]
    ) -> None:
        """Publish ``result``; if nobody subscribes (0x10), ``on_unheard`` runs and it is kept for a retry; if the
        broker refuses it, it is kept (with ``on_acked``, its embedding's ack) until the broker takes it."""

        def unheard() -> None:
            on_unheard()
            if not self.unheard.add(result, attempt):
                log.warning(kv("result-unheard", node=result.node, seq=result.seq, attempts=attempt + 1))

        def refused(refusal: Refusal) -> None:
            self.connection.log_refusal(refusal)
            self.refused.add(result, on_acked or (lambda: None))

        self.connection.publish(
            self.topics.results(result.node),
            result_json(result),
            on_acked=on_acked,
            on_unheard=unheard,
            on_refused=refused,
        )

    def _republish_refused(self) -> None:
        """Publish the refused results again once their round is due; the first one taken resets the delay."""
        for result, ack in self.refused.due():

            def taken(ack: Callable[[], None] = ack) -> None:
                self.refused.taken()
                ack()

            self._publish_result(result, 0, on_acked=taken, on_unheard=taken)

    def _republish_unheard(self) -> None:
        """Publish again the results whose back-off is over (the embedding was acked: the result is here)."""
        for retry in self.unheard.due():
            self._publish_result(retry.result, retry.attempt + 1, on_acked=None, on_unheard=lambda: None)

    def _republish_recent(self) -> None:
        """After a reconnect, publish again the results from ``resend_seconds`` before the connection was lost.

        mosquitto persists by snapshot: after a crash it has lost what it acknowledged since the last one.
        Consumers are idempotent on (node, seq), so the copies of results that did survive are harmless.
        """
        until = self._connected_at  # results made on this connection are at the broker already
        lost_at = self.connection.lost_at or until
        since = lost_since(lost_at, self.connection.settings.keepalive, self.settings.resend_seconds)
        recent = [r for r in self.classifier.recent(since) if r.classified_at < until]
        self._publish_again(recent)
        if recent:
            log.info(kv("results-republished", count=len(recent), since=moment(since)))

    def _publish_again(self, results: list[FaceResult]) -> None:
        """Publish ``results`` once more (their embeddings were acked long ago: nothing waits on these)."""
        for result in results:
            self.connection.publish(self.topics.results(result.node), result_json(result))

    def _on_replay_request(self, message: Message) -> None:
        """Note a subscriber's replay request (served by the worker); a malformed one is dead-lettered."""
        try:
            request = ReplayRequest.from_json(message.payload)
        except SchemaError as exc:
            letter = DeadLetter(exc.reason, exc.detail, message.topic, message.payload)
            self._dead_letter(letter, self._acker(message, self._epoch))
            return
        since = max(request.since, time.time() - self.settings.replay_max_seconds)
        with self._replay_lock:
            self._replay_since = since if self._replay_since is None else min(self._replay_since, since)
        log.info(kv("replay-request", client=request.client, since=moment(since)))
        if message.qos > 0:
            self.connection.ack(message)

    def _replay_requested(self) -> None:
        """Publish again every remembered result from the earliest time pending requests ask for."""
        now = time.monotonic()
        with self._replay_lock:
            since = self._replay_since
            if since is None or now - self._replayed_at < REPLAY_PAUSE:
                return
            self._replay_since, self._replayed_at = None, now
        recent = self.classifier.recent(since)
        self._publish_again(recent)
        log.info(kv("results-replayed", count=len(recent), since=moment(since)))
        self.on_replay(since)

    def _dead_letter(self, letter: DeadLetter, ack: Callable[[], None]) -> None:
        """Count and publish ``letter``; ``ack`` (the refused message's) runs once the broker has it."""
        self.counters.deadletters += 1
        self.counters.reasons[letter.reason] += 1
        log.warning(kv("dead-letter", reason=letter.reason, detail=letter.detail, topic=letter.topic))
        self.connection.publish(self.topics.deadletter(SERVICE), letter.to_json(SERVICE), on_acked=ack)

    def _acker(self, message: Message, epoch: int) -> Callable[[], None]:
        """Acknowledge ``message`` once its outcome is at the broker, if still on the same connection."""

        def ack() -> None:
            if epoch == self._epoch and message.qos > 0:
                self.connection.ack(message)

        return ack

    def _on_connection_change(self, connected: bool) -> None:
        # Acks for messages received on an earlier connection must not be sent on a new one:
        # the broker redelivers those messages and the core answers them from memory.
        if not connected:
            self._epoch += 1
        elif self.settings.resend_seconds > 0:
            self._connected_at = time.time()
            self._republish.set()
