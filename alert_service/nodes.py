"""Active nodes: retained status + heartbeats -> online / stale / offline (pure core and its subscriber)."""

from __future__ import annotations

import logging
import threading
import time

from facewire.errors import SchemaError
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection, Will
from facewire.schema.status import NodesSummary, NodeStatus, NodeView, ServiceStatus
from facewire.topics import Topics

log = logging.getLogger(__name__)
SERVICE = "nodes"
MAX_CLOCK_AHEAD = 60.0


class NodeRegistry:
    """The newest status of every node and when it was heard; states are derived at read time."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self._status: dict[str, tuple[NodeStatus, float]] = {}
        self._lock = threading.Lock()

    def update(self, node: str, status: NodeStatus, received: float) -> None:
        """Take a status; its own ``ts`` (heartbeat time) counts unless it lies in the future."""
        stamp = status.ts
        heard = stamp if stamp is not None and stamp <= received + MAX_CLOCK_AHEAD else received
        with self._lock:
            self._status[node] = (status, heard)

    def views(self, now: float) -> list[NodeView]:
        with self._lock:
            items = sorted(self._status.items())
        return [self._view(node, status, heard, now) for node, (status, heard) in items]

    def _view(self, node: str, status: NodeStatus, heard: float, now: float) -> NodeView:
        age = max(0.0, now - heard)
        state = "offline" if status.state != "online" else "stale" if age > self.stale_after else "online"
        return NodeView(
            node=node,
            state=state,
            last_seen=heard,
            age=age,
            fps=status.fps,
            faces_per_s=status.faces_per_s,
            queue=status.spool_depth if status.spool_depth is not None else status.unconfirmed,
            model=status.model,
            reason=status.reason,
        )


def parse_status(topic: str, payload: bytes) -> tuple[str, NodeStatus] | None:
    """(node, status) of a ``<prefix>/nodes/<node>/status`` message, or None if it is not a valid one."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "status" or not payload:
        return None
    try:
        return parts[-2], NodeStatus.from_json(payload)
    except SchemaError:
        return None


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
        return Will(self.status_topic, ServiceStatus(self.instance, "offline").to_json())

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
        summary = NodesSummary(time.time(), tuple(views)).to_json()
        self.connection.publish(self.topics.stats_nodes(), summary, retain=True)
        return views

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            self.publish(time.time())
            self.connection.publish(self.status_topic, self._own_status("online"), retain=True)

    def stop(self) -> None:
        self.connection.close(final=Will(self.status_topic, self._own_status("offline")))

    def _own_status(self, state: str) -> bytes:
        return ServiceStatus(self.instance, state, time.time()).to_json()

    def _on_status(self, message: Message) -> None:
        parsed = parse_status(message.topic, message.payload)
        if parsed is not None:
            self.registry.update(parsed[0], parsed[1], time.time())
            self.publish(time.time())
