"""The alerts subscriber: rules on every result, one alert per incident, published, stored, sent to a webhook.

Each (rule, sighting) step runs in one store transaction, so replicas sharing
the database decide one at a time and a redelivered result is recognised by
its (rule, node, seq) sighting. An alert is stored before it is published and
marked published on the broker's ack; alerts left unpublished by a crash are
published again (same id) by the next pass.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from alert_service.rules import RuleBook, decide
from alert_service.store import AlertStore
from alert_service.subscriber import ResultSubscriber, take_batch
from alert_service.webhook import AlertSender
from facewire.config import AlertSettings
from facewire.logs import kv
from facewire.mqtt import MqttConnection
from facewire.schema import Alert, FaceResult
from facewire.topics import Topics

log = logging.getLogger(__name__)
REPUBLISH_AFTER = 30.0
PRUNE_EVERY = 300.0


class AlertEngine:
    """Rules plus store: ``process(result)`` returns the alerts the result newly raises."""

    def __init__(self, rules: RuleBook, store: AlertStore) -> None:
        self.rules = rules
        self.store = store

    def process(self, result: FaceResult, now: float) -> list[Alert]:
        raised = []
        cooldown = self.rules.settings.cooldown
        for trigger in self.rules.triggers(result):
            with self.store.transaction():
                if not self.store.add_sighting(trigger.sighting(result)):
                    continue  # this rule has seen this (node, seq): a redelivery or a replica's copy
                window = self.store.sightings(
                    trigger.rule, trigger.subject, result.ts - trigger.window, result.ts + trigger.window
                )
                latest = self.store.latest_incident(trigger.rule, trigger.subject)
                decision = decide(trigger, result, window, latest, cooldown, now)
                if decision.extend_key is not None:
                    self.store.extend_incident(decision.extend_key, result.ts)
                elif decision.alert is not None and self.store.open_incident(decision.alert):
                    raised.append(decision.alert)
        return raised

    def prune(self, now_ts: float) -> int:
        """Forget sightings too old for any window or cooldown."""
        keep = 2 * max(self.rules.settings.unknown_window, self.rules.settings.cooldown, 3600.0)
        return self.store.prune_sightings(now_ts - keep)


class AlertService(ResultSubscriber):
    """Runs the engine on a worker thread, publishes each new alert to ``<prefix>/alerts/<node>``."""

    service = "alerts"

    def __init__(
        self,
        engine: AlertEngine,
        connection: MqttConnection,
        topics: Topics,
        settings: AlertSettings,
        instance: str,
        webhook: AlertSender | None = None,
    ) -> None:
        # Its newest sighting (a result no rule looked at needs no second look); an edge clock ahead of ours
        # must not put that in the future.
        newest = engine.store.newest_sighting_ts()
        super().__init__(
            connection, topics, instance, settings.share_group, None if newest is None else min(newest, time.time())
        )
        self.engine = engine
        self.webhook = webhook
        self.processed = 0
        self.raised = 0
        self._next_housekeeping = time.monotonic() + REPUBLISH_AFTER
        self._published: deque[str] = deque()  # keys acked by the broker, marked by the worker

    def counters(self) -> dict[str, Any]:
        hook = self.webhook
        return {
            "processed": self.processed,
            "raised": self.raised,
            "webhook": None if hook is None else {"sent": hook.sent, "failed": hook.failed, "pending": hook.pending},
        }

    def start(self) -> None:
        if self.webhook is not None:
            self.webhook.start()
        self.republish(time.time() - 5.0)
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self.webhook is not None:
            self.webhook.stop()

    def erase(self, person: str, marker: str) -> None:
        self.engine.store.erase_person(person, marker)

    def work(self, timeout: float) -> None:
        batch = take_batch(self.inbox, 100, 0.0, timeout)
        for done, item in enumerate(batch):
            try:
                alerts = self.engine.process(self.scrub(item.result), time.time())
            except Exception as exc:  # the store failed: retried (the engine is idempotent), never acked undecided
                self.retry_later(batch[done:], exc)
                return
            self.processed += 1
            for alert in alerts:
                self.publish(alert)
            self.ack(item)
        while self._published:
            self.engine.store.mark_published(self._published.popleft())
        if time.monotonic() >= self._next_housekeeping:
            self._next_housekeeping = time.monotonic() + REPUBLISH_AFTER
            self.republish(time.time() - REPUBLISH_AFTER)

    def publish(self, alert: Alert) -> None:
        """Publish (QoS 1), mark published on the broker's ack, hand to the webhook."""
        self.raised += 1
        log.warning(kv("alert", id=alert.id, rule=alert.rule, node=alert.node, message=alert.message))
        self._send(alert)
        if self.webhook is not None:
            self.webhook.submit(alert)

    def republish(self, older_than: float) -> None:
        """Publish again what a crash left unpublished; prune old sightings."""
        for alert in self.engine.store.unpublished(older_than):
            log.info(kv("alert-republished", id=alert.id))
            self._send(alert)
        self.engine.prune(time.time())

    def _send(self, alert: Alert) -> None:
        self.connection.publish(
            self.topics.alerts(alert.node), alert.to_json(), on_acked=lambda: self._published.append(alert.id)
        )
