"""The monitor's pure state: ingest (topic, payload) pairs, produce a JSON-ready snapshot.

No MQTT and no terminal here: the adapter feeds messages in, the renderer and
``--json`` read :meth:`MonitorState.snapshot`. Every payload is parsed
defensively: a malformed message is counted, never raised.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from facewire.errors import SchemaError
from facewire.presentation import result_style
from facewire.schema import Alert, DeadLetter, FaceResult
from facewire.schema.stats import ThresholdReport
from facewire.schema.status import NodeStatus, ServiceStatus
from facewire.topics import Topics
from facewire_console.monitor.stats import latency_percentiles, threshold_summary

RESULTS_KEPT = 200
ALERTS_KEPT = 50
LATENCY_WINDOW = 2000
THROUGHPUT_WINDOW = 10.0
KEYS_REMEMBERED = 100_000  # (node, seq) keys kept to drop QoS-1 redeliveries


@dataclass
class NodeInfo:
    """The last status a node published, and when it was received."""

    status: NodeStatus | None
    received: float
    results: int = 0
    last_person: str = ""
    last_ts: float = float("-inf")


@dataclass
class Filters:
    """What the screen shows: only one node and/or one person ('' : all)."""

    node: str = ""
    person: str = ""

    def accept(self, node: str, name: str) -> bool:
        return (not self.node or node == self.node) and (not self.person or name == self.person)


@dataclass
class MonitorState:
    """Everything the monitor knows, built only from messages seen on the broker."""

    topics: Topics = field(default_factory=Topics)
    configured_threshold: float = 0.45
    stale_after: float = 30.0
    alert_window: float = 3600.0  # alerts raised longer ago than this no longer count as open
    filters: Filters = field(default_factory=Filters)
    connected: bool = False
    broker: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.results: deque[FaceResult] = deque(maxlen=RESULTS_KEPT)
        self.latencies: deque[tuple[str, str, float]] = deque(maxlen=LATENCY_WINDOW)
        self.arrivals: deque[tuple[float, str, str]] = deque()
        self.seen: set[tuple[str, int]] = set()
        self._seen_order: deque[tuple[str, int]] = deque()
        self.names: Counter[str] = Counter()
        self.nodes: dict[str, NodeInfo] = {}
        self.services: dict[str, ServiceStatus] = {}
        self.alerts: deque[Alert] = deque(maxlen=ALERTS_KEPT)
        self.thresholds: ThresholdReport | None = None
        self.deadletters: Counter[tuple[str, str]] = Counter()
        self.malformed: Counter[str] = Counter()
        self.total_results = 0

    def ingest(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Take one message from any subscribed topic; unknown or malformed ones are counted."""
        now = time.time() if now is None else now
        with self._lock:
            try:
                self._route(topic, payload, now)
            except SchemaError as exc:
                self.malformed[exc.reason] += 1

    def _route(self, topic: str, payload: bytes, now: float) -> None:
        parts = topic.split("/")
        prefix_len = len(self.topics.prefix.split("/"))
        kind = parts[prefix_len] if len(parts) > prefix_len else ""
        if kind == "results":
            self._result(FaceResult.from_json(payload), now)
        elif kind == "nodes" and parts[-1] == "status" and len(parts) == prefix_len + 3:
            self._node_status(parts[prefix_len + 1], NodeStatus.from_json(payload), now)
        elif kind == "services" and parts[-1] == "status" and len(parts) == prefix_len + 4:
            self.services[f"{parts[prefix_len + 1]}/{parts[prefix_len + 2]}"] = ServiceStatus.from_json(payload)
        elif kind == "alerts":
            self._alert(Alert.from_json(payload))
        elif topic == self.topics.stats_thresholds():
            self.thresholds = ThresholdReport.from_json(payload) if payload else None
        elif kind == "deadletter":
            self.deadletters[(parts[-1], DeadLetter.from_json(payload).reason[:40])] += 1
        else:
            self.malformed["unexpected-topic"] += 1

    def _result(self, result: FaceResult, now: float) -> None:
        if result.key in self.seen:  # QoS 1 redelivery
            return
        self.seen.add(result.key)
        self._seen_order.append(result.key)
        if len(self._seen_order) > KEYS_REMEMBERED:
            self.seen.discard(self._seen_order.popleft())
        self.total_results += 1
        self.results.append(result)
        self.names[result.name] += 1
        self.arrivals.append((now, result.node, result.name))
        self.latencies.append((result.node, result.name, (result.classified_at - result.ts) * 1000.0))
        node = self.nodes.setdefault(result.node, NodeInfo(None, 0.0))
        node.results += 1
        if result.ts >= node.last_ts:  # a late or redelivered older result does not overwrite a newer one
            node.last_person, node.last_ts = result.name, result.ts

    def _node_status(self, node: str, status: NodeStatus, now: float) -> None:
        info = self.nodes.setdefault(node, NodeInfo(status, now))
        info.status, info.received = status, now

    def _alert(self, alert: Alert) -> None:
        if all(existing.id != alert.id for existing in self.alerts):
            self.alerts.append(alert)

    def cycle_filter(self, which: str) -> None:
        """Step the node or person filter to the next value seen ('' : all), as the n / p keys do."""
        with self._lock:
            options = sorted(self.nodes) if which == "node" else sorted(self.names)
            current = getattr(self.filters, which)
            values = ["", *options]
            index = values.index(current) if current in values else 0
            setattr(self.filters, which, values[(index + 1) % len(values)])

    def snapshot(self, now: float | None = None, rows: int = 50) -> dict[str, Any]:
        """A JSON-serialisable view of the state, filtered by node and person."""
        now = time.time() if now is None else now
        with self._lock:
            return {
                "ts": round(now, 3),
                "broker": self.broker,
                "connected": self.connected,
                "filters": {"node": self.filters.node, "person": self.filters.person},
                "results": self._results_view(rows),
                "totals": self._totals(),
                "throughput": self._throughput(now),
                "latency_ms": latency_percentiles(
                    [ms for node, name, ms in self.latencies if self.filters.accept(node, name)]
                ),
                "nodes": self._nodes_view(now),
                "classifiers": self._classifiers_view(),
                "alerts": self._alerts_view(now),
                "thresholds": threshold_summary(self.thresholds, self._configured()),
                "deadletters": [
                    {"service": service, "reason": reason, "count": count}
                    for (service, reason), count in sorted(self.deadletters.items())
                ],
                "malformed": dict(self.malformed),
            }

    def _results_view(self, rows: int) -> list[dict[str, Any]]:
        shown = [r for r in reversed(self.results) if self.filters.accept(r.node, r.name)][:rows]
        return [
            {
                "ts": r.ts,
                "time": time.strftime("%H:%M:%S", time.localtime(r.ts)),
                "node": r.node,
                "seq": r.seq,
                "name": r.name,
                "score": round(r.score, 4),
                "known": r.known,
                "style": result_style(r),
            }
            for r in shown
        ]

    def _totals(self) -> dict[str, Any]:
        names = {n: c for n, c in self.names.items() if not self.filters.person or n == self.filters.person}
        return {"results": self.total_results, "by_name": dict(sorted(names.items()))}

    def _throughput(self, now: float) -> float:
        while self.arrivals and self.arrivals[0][0] < now - THROUGHPUT_WINDOW:
            self.arrivals.popleft()
        count = sum(1 for _t, node, name in self.arrivals if self.filters.accept(node, name))
        return round(count / THROUGHPUT_WINDOW, 2)

    def _nodes_view(self, now: float) -> list[dict[str, Any]]:
        view = []
        for node, info in sorted(self.nodes.items()):
            if self.filters.node and node != self.filters.node:
                continue
            status = info.status or NodeStatus(node, "offline")
            view.append(
                {
                    "node": node,
                    "state": self._node_state(info, now),
                    "fps": status.fps,
                    "faces_per_s": status.faces_per_s,
                    "published": _number(status.published),
                    "unconfirmed": _number(status.unconfirmed),
                    "model": status.model,
                    "results": info.results,
                    "last_person": info.last_person,
                    "age_s": round(now - _heartbeat_time(info), 1) if info.status is not None else None,
                }
            )
        return view

    def _node_state(self, info: NodeInfo, now: float) -> str:
        state = "unknown" if info.status is None else info.status.state
        if state == "online" and now - _heartbeat_time(info) > self.stale_after:
            return "stale"
        return state

    def _classifiers_view(self) -> list[dict[str, Any]]:
        view = []
        for key, status in sorted(self.services.items()):
            if not key.startswith("classifier/"):
                continue
            view.append(
                {
                    "instance": key.split("/", 1)[1],
                    "state": status.state,
                    "people": status.number("people"),
                    "gallery_size": status.number("gallery_size"),
                    "queue": sum(status.counts("queue").values()),
                    "results": status.number("results"),
                    "deadletters": status.number("deadletters"),
                    "threshold": status.number("threshold"),
                }
            )
        return view

    def _alerts_view(self, now: float) -> list[dict[str, Any]]:
        since = now - self.alert_window
        shown = [a for a in reversed(self.alerts) if a.raised_at >= since and self.filters.accept(a.node, a.subject)]
        return [
            {
                "id": a.id,
                "time": time.strftime("%H:%M:%S", time.localtime(a.raised_at)),
                "rule": a.rule,
                "node": a.node,
                "subject": a.subject,
                "message": a.message,
            }
            for a in shown
        ]

    def _configured(self) -> float:
        for status in self.services.values():
            value = status.number("threshold")
            if value is not None:
                return value
        return self.results[-1].threshold if self.results else self.configured_threshold


def _number(value: int | None) -> float | None:
    return None if value is None else float(value)


def _heartbeat_time(info: NodeInfo) -> float:
    """When the node last spoke: its own ``ts`` if plausible, else when we received the status."""
    sent = None if info.status is None else info.status.ts
    return sent if sent is not None and sent <= info.received + 5 else info.received
