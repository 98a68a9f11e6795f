"""Active nodes: retained status + heartbeats -> online / stale / offline (pure core and its subscriber)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as paho

from facewire.logs import kv
from facewire.mqtt import MqttConnection, Will
from facewire.topics import Topics

log = logging.getLogger(__name__)
SERVICE = "nodes"
MAX_CLOCK_AHEAD = 60.0
QUEUE_FIELDS = ("spool_depth", "spool", "queue", "unconfirmed")  # the first one a heartbeat carries is shown


@dataclass(frozen=True)
class NodeView:
    """One node as ``facewire nodes`` shows it."""

    node: str
    state: str
    last_seen: float
    age: float
    fps: float | None
    faces_per_s: float | None
    queue: int | None
    model: str
    reason: str


class NodeRegistry:
    """The newest status of every node and when it was heard; states are derived at read time."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self._status: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def update(self, node: str, status: dict[str, Any], received: float) -> None:
        """Take a status; its own ``ts`` (heartbeat time) counts unless it lies in the future."""
        stamp = status.get("ts")
        heard = received
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and stamp <= received + MAX_CLOCK_AHEAD:
            heard = float(stamp)
        with self._lock:
            self._status[node] = (status, heard)

    def views(self, now: float) -> list[NodeView]:
        with self._lock:
            items = sorted(self._status.items())
        return [self._view(node, status, heard, now) for node, (status, heard) in items]

    def _view(self, node: str, status: dict[str, Any], heard: float, now: float) -> NodeView:
        age = max(0.0, now - heard)
        state = "offline" if status.get("state") != "online" else "stale" if age > self.stale_after else "online"
        queue = next((status[k] for k in QUEUE_FIELDS if isinstance(status.get(k), int)), None)
        return NodeView(
            node=node,
            state=state,
            last_seen=heard,
            age=age,
            fps=_number(status.get("fps")),
            faces_per_s=_number(status.get("faces_per_s")),
            queue=queue,
            model=str(status.get("model", "")),
            reason=str(status.get("reason", "")),
        )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_status(topic: str, payload: bytes) -> tuple[str, dict[str, Any]] | None:
    """(node, status) of a ``<prefix>/nodes/<node>/status`` message, or None if it is not one."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "status" or not payload:
        return None
    try:
        status = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (parts[-2], status) if isinstance(status, dict) else None


class NodeWatcher:
    """Subscribes to node status, logs state changes, publishes a retained summary on ``stats/nodes``."""

    def __init__(self, registry: NodeRegistry, connection: MqttConnection, topics: Topics, instance: str) -> None:
        self.registry = registry
        self.connection = connection
        self.topics = topics
        self.instance = instance
        self._states: dict[str, str] = {}

    @property
    def status_topic(self) -> str:
        return self.topics.service_status(SERVICE, self.instance)

    def will(self) -> Will:
        return Will(self.status_topic, json.dumps({"instance": self.instance, "state": "offline"}).encode())

    def start(self) -> None:
        self.connection.subscribe(self.topics.node_status_all(), self._on_status)
        self.connection.publish(self.status_topic, self._own_status("online"), retain=True)

    def publish(self, now: float) -> list[NodeView]:
        """Publish the summary; log nodes whose state changed since the last call."""
        views = self.registry.views(now)
        for view in views:
            if self._states.get(view.node) != view.state:
                level = logging.INFO if view.state == "online" else logging.WARNING
                log.log(level, kv("node-state", node=view.node, state=view.state, age=view.age))
                self._states[view.node] = view.state
        summary = {"ts": time.time(), "nodes": [asdict(v) for v in views]}
        self.connection.publish(self.topics.stats_nodes(), json.dumps(summary).encode(), retain=True)
        return views

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            self.publish(time.time())
            self.connection.publish(self.status_topic, self._own_status("online"), retain=True)

    def stop(self) -> None:
        self.connection.close(final=Will(self.status_topic, self._own_status("offline")))

    def _own_status(self, state: str) -> bytes:
        return json.dumps({"instance": self.instance, "state": state, "ts": time.time()}).encode()

    def _on_status(self, message: paho.MQTTMessage) -> None:
        parsed = parse_status(message.topic, bytes(message.payload))
        if parsed is not None:
            self.registry.update(parsed[0], parsed[1], time.time())
            self.publish(time.time())
