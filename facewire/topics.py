"""Every MQTT topic facewire publishes or subscribes to, built and parsed in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

NODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def valid_node_id(node: str) -> bool:
    """True when ``node`` is usable as one topic level (no wildcards, slashes or spaces)."""
    return bool(NODE_PATTERN.fullmatch(node))


@dataclass(frozen=True)
class Topics:
    """Topic names under one configurable prefix (default ``facewire``)."""

    prefix: str = "facewire"

    def embeddings(self, node: str) -> str:
        return f"{self.prefix}/embeddings/{node}"

    def embeddings_all(self) -> str:
        return f"{self.prefix}/embeddings/+"

    def embeddings_shared(self, group: str) -> str:
        """Shared subscription so classifier replicas split the stream between them."""
        return f"$share/{group}/{self.embeddings_all()}"

    def results(self, node: str) -> str:
        return f"{self.prefix}/results/{node}"

    def results_all(self) -> str:
        return f"{self.prefix}/results/+"

    def results_shared(self, group: str) -> str:
        """Shared subscription so replicas of one results subscriber split the stream ('' : not shared)."""
        return f"$share/{group}/{self.results_all()}" if group else self.results_all()

    def thumbnails(self, node: str) -> str:
        """Opt-in (edge.unknown_thumbnails): small JPEGs of faces the classifier found unknown."""
        return f"{self.prefix}/thumbnails/{node}"

    def thumbnails_all(self) -> str:
        return f"{self.prefix}/thumbnails/+"

    def alerts(self, node: str) -> str:
        return f"{self.prefix}/alerts/{node}"

    def alerts_all(self) -> str:
        return f"{self.prefix}/alerts/+"

    def deadletter_all(self) -> str:
        return f"{self.prefix}/deadletter/+"

    def ha_node_state(self, node: str) -> str:
        """Retained last person seen on ``node``, the state of its Home Assistant sensor."""
        return f"{self.prefix}/homeassistant/nodes/{node}/last_person"

    def ha_person_state(self, object_id: str) -> str:
        """Retained last node a person was seen on, the state of their Home Assistant sensor."""
        return f"{self.prefix}/homeassistant/people/{object_id}/last_node"

    def node_status(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/status"

    def node_status_all(self) -> str:
        return f"{self.prefix}/nodes/+/status"

    def service_status(self, service: str, instance: str) -> str:
        return f"{self.prefix}/services/{service}/{instance}/status"

    def stats_thresholds(self) -> str:
        return f"{self.prefix}/stats/thresholds"

    def stats_nodes(self) -> str:
        """Retained summary of every node's state (online / stale / offline), from the nodes subscriber."""
        return f"{self.prefix}/stats/nodes"

    def service_status_all(self) -> str:
        return f"{self.prefix}/services/+/+/status"

    def gallery_cmd(self) -> str:
        return f"{self.prefix}/gallery/cmd"

    def gallery_events(self) -> str:
        return f"{self.prefix}/gallery/events"

    def identify_request(self) -> str:
        """Search-by-photo requests; the answer goes to the request's MQTT 5 response topic."""
        return f"{self.prefix}/identify/req"

    def identify_response(self, client: str) -> str:
        return f"{self.prefix}/identify/resp/{client}"

    def deadletter(self, service: str) -> str:
        return f"{self.prefix}/deadletter/{service}"

    def node_of(self, topic: str, kind: str) -> str | None:
        """The node level of ``<prefix>/<kind>/<node>``, or None if ``topic`` is not of that kind."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if len(parts) != len(head) + 2 or parts[: len(head)] != head or parts[len(head)] != kind:
            return None
        return parts[-1]


def matches(subscription: str, topic: str) -> bool:
    """MQTT wildcard match of ``topic`` against ``subscription`` (``$share/<group>/`` stripped)."""
    if subscription.startswith("$share/"):
        subscription = subscription.split("/", 2)[2]
    sub_parts, topic_parts = subscription.split("/"), topic.split("/")
    for index, part in enumerate(sub_parts):
        if part == "#":
            return True
        if index >= len(topic_parts) or (part != "+" and part != topic_parts[index]):
            return False
    return len(sub_parts) == len(topic_parts)
