"""Results forwarded to another server: every result (or a filtered subset) POSTed as JSON to an HTTP endpoint.

The subscriber commits each result to a durable outbox (:mod:`alert_service.forward_queue`)
before acknowledging it to the broker; a sender thread POSTs the outbox in order,
one result per request with an ``Idempotency-Key: <node>:<seq>`` header, and deletes
a result only after a 2xx answer. While the endpoint is down the sender backs off
(doubling to ``forward.backoff_max``) and retries the same result, so the order
is kept and nothing is lost. A 4xx other than 408 and 429 is a refusal for good:
that result moves to the outbox's ``rejected`` table, counted in the status.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from alert_service.forward_queue import ForwardQueue, Pending
from alert_service.subscriber import ResultSubscriber, take_batch
from facewire.config import ForwardSettings
from facewire.logs import kv
from facewire.mqtt import MqttConnection
from facewire.schema import FaceResult
from facewire.schema.status import Detail
from facewire.topics import Topics

log = logging.getLogger(__name__)
RETRYABLE_4XX = (408, 429)


@dataclass(frozen=True)
class ForwardFilter:
    """Which results are forwarded: by person, node and known/unknown (empty lists: all)."""

    people: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    only: str = "all"  # all | known | unknown

    def wants(self, result: FaceResult) -> bool:
        if self.only == "known" and not result.known:
            return False
        if self.only == "unknown" and result.known:
            return False
        if self.people and result.name not in self.people:
            return False
        return not self.nodes or result.node in self.nodes


class ResultForwarder(ResultSubscriber):
    """Subscribes to results, keeps the wanted ones in the outbox and acks them once committed."""

    service = "forward"

    def __init__(
        self,
        outbox: ForwardQueue,
        sender: HttpSender,
        connection: MqttConnection,
        topics: Topics,
        settings: ForwardSettings,
        instance: str,
    ) -> None:
        super().__init__(connection, topics, instance, settings.share_group, outbox.handled_until())
        self.outbox = outbox
        self.sender = sender
        self.settings = settings
        self.filter = ForwardFilter(tuple(settings.people), tuple(settings.nodes), settings.only)
        self.received = 0
        self.queued = 0

    def counters(self) -> dict[str, Detail]:
        return {
            "received": self.received,
            "queued": self.queued,
            "forwarded": self.sender.forwarded,
            "pending": self.outbox.depth,
            "rejected": self.outbox.rejected,
            "failed_attempts": self.sender.failed_attempts,
        }

    def start(self) -> None:
        self.sender.start()
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.sender.stop()

    def erase(self, person: str, marker: str) -> None:
        self.outbox.erase(person, marker)

    def work(self, timeout: float) -> None:
        batch = take_batch(self.inbox, self.settings.batch_max, 0.05, timeout)
        if not batch:
            return
        wanted = [self.scrub(item.result) for item in batch if self.filter.wants(item.result)]
        try:
            self.queued += self.outbox.put(wanted, max(item.result.classified_at for item in batch))
        except Exception as exc:  # a full or locked disk: retried, never acked unstored
            self.retry_later(batch, exc)
            return
        self.received += len(batch)
        self.sender.wake()
        for item in batch:
            self.ack(item)


class HttpSender:
    """One thread POSTing the outbox in order, with back-off while the endpoint fails."""

    def __init__(self, outbox: ForwardQueue, settings: ForwardSettings) -> None:
        self.outbox = outbox
        self.settings = settings
        self.forwarded = 0
        self.failed_attempts = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forward-sender", daemon=True)
        self._reported: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.settings.backoff
        while not self._stop.is_set():
            pending = self.outbox.oldest(50)
            if not pending:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            for entry in pending:
                if self._stop.is_set():
                    return
                if not self._send(entry):
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max)
                    break
                backoff = self.settings.backoff

    def _send(self, entry: Pending) -> bool:
        """POST one result; True when it left the outbox (delivered or refused for good)."""
        request = urllib.request.Request(
            self.settings.url,
            data=entry.body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": f"{entry.node}:{entry.seq}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as answer:
                answer.read(4096)
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX:
                self.outbox.reject(entry, exc.code, exc.read(500).decode("utf-8", "replace"), time.time())
                log.warning(kv("forward-rejected", node=entry.node, seq=entry.seq, status=exc.code))
                return True
            return self._failed(f"HTTP {exc.code}")
        except (OSError, http.client.HTTPException) as exc:
            return self._failed(str(exc)[:160])
        self.outbox.delivered(entry)
        self.forwarded += 1
        self._reported.clear()
        return True

    def _failed(self, error: str) -> bool:
        self.failed_attempts += 1
        if error not in self._reported:  # once per distinct error until the next success
            self._reported.add(error)
            log.warning(kv("forward-failed", url=self.settings.url, error=error, pending=self.outbox.depth))
        return False
