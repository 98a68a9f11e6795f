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
        """Shared subscription so classifier replicas split the stream ('': a plain one, for a single classifier)."""
        return f"$share/{group}/{self.embeddings_all()}" if group else self.embeddings_all()

    def results(self, node: str) -> str:
        return f"{self.prefix}/results/{node}"

    def results_all(self) -> str:
        return f"{self.prefix}/results/+"

    def results_shared(self, group: str) -> str:
        """Shared subscription so replicas of one results subscriber split the stream ('' : not shared)."""
        return f"$share/{group}/{self.results_all()}" if group else self.results_all()

    def results_replay(self) -> str:
        """Replay requests (:class:`facewire.schema.replay.ReplayRequest`): not under results/, which ``+`` reads."""
        return f"{self.prefix}/replay/results"

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

    def ha_attributes(self, state_topic: str) -> str:
        """Retained JSON attributes (score, time, camera) of the sensor whose state is on ``state_topic``."""
        return f"{state_topic}/attributes"

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

    def gallery_cmd(self, account: str) -> str:
        """Commands of one broker account: the ACL lets an account publish only on its own."""
        return f"{self.prefix}/gallery/cmd/{account}"

    def gallery_cmd_all(self) -> str:
        return f"{self.prefix}/gallery/cmd/+"

    def command_account(self, topic: str) -> str | None:
        """The broker account a gallery command came from (the last level of its topic), or None."""
        head = f"{self.prefix}/gallery/cmd/"
        account = topic[len(head) :] if topic.startswith(head) else ""
        usable = 0 < len(account) <= 128 and account.isprintable() and not set(account) & set("/+#")
        return account if usable else None

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


@dataclass(frozen=True)
class Channel:
    """One family of topics: its address under the prefix (``{name}`` marks one level), what it carries, who uses it.

    ``message`` names the payload's class in :mod:`facewire.schema` (see
    ``facewire.schema.catalog``); ``docs/asyncapi.yaml`` is generated from these.
    """

    name: str
    address: str
    message: str
    description: str
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]
    retained: bool = False

    def pattern(self, prefix: str) -> str:
        """The subscription that matches every topic of this channel (each ``{name}`` as ``+``)."""
        return f"{prefix}/" + "/".join("+" if level.startswith("{") else level for level in self.address.split("/"))


CHANNELS = (
    Channel(
        "embeddings",
        "embeddings/{node}",
        "FaceEmbedding",
        "One face seen by an edge node (msgpack). Classifier replicas share the subscription ($share/<group>/...).",
        ("edge_agent",),
        ("classifier_service",),
    ),
    Channel(
        "results",
        "results/{node}",
        "FaceResult",
        "The classifier's decision for one embedding: a name or unknown, with the top candidates.",
        ("classifier_service",),
        ("alert_service", "edge_agent", "facewire_console"),
    ),
    Channel(
        "results-replay",
        "replay/results",
        "ReplayRequest",
        "A subscriber whose session a crashed broker lost asks every classifier for its recent results again.",
        ("alert_service",),
        ("classifier_service",),
    ),
    Channel(
        "thumbnails",
        "thumbnails/{node}",
        "Thumbnail",
        "Opt-in (edge.unknown_thumbnails): a small JPEG of a face the classifier found unknown, once per track.",
        ("edge_agent",),
        ("facewire_console",),
    ),
    Channel(
        "alerts",
        "alerts/{node}",
        "Alert",
        "An incident raised by the alert service; the id is the incident key.",
        ("alert_service",),
        ("facewire_console",),
    ),
    Channel(
        "deadletter",
        "deadletter/{service}",
        "DeadLetter",
        "A message a service could not use: the reason, its topic, its size and first bytes.",
        ("classifier_service", "alert_service"),
        ("facewire_console",),
    ),
    Channel(
        "node-status",
        "nodes/{node}/status",
        "NodeStatus",
        "An edge node's heartbeat; its last will (offline) when it vanishes.",
        ("edge_agent",),
        ("alert_service", "facewire_console"),
        retained=True,
    ),
    Channel(
        "service-status",
        "services/{service}/{instance}/status",
        "ServiceStatus",
        "A service instance's heartbeat with its own counters; its last will (offline) when it vanishes.",
        ("classifier_service", "alert_service", "facewire_console"),
        ("facewire_console",),
        retained=True,
    ),
    Channel(
        "stats-thresholds",
        "stats/thresholds",
        "ThresholdReport",
        "FAR / FRR over a threshold grid, the recommended and equal-error thresholds, the score histograms.",
        ("alert_service",),
        ("facewire_console",),
        retained=True,
    ),
    Channel(
        "stats-nodes",
        "stats/nodes",
        "NodesSummary",
        "Every edge node's judged state (online / stale / offline), from the nodes watcher.",
        ("alert_service",),
        ("facewire_console",),
        retained=True,
    ),
    Channel(
        "gallery-commands",
        "gallery/cmd/{account}",
        "GalleryCommand",
        "Gallery commands, on the topic of the sending broker account; every classifier replica applies each.",
        ("facewire_console", "classifier_service"),
        ("classifier_service",),
    ),
    Channel(
        "gallery-events",
        "gallery/events",
        "GalleryEvent",
        "What each replica did about a command (same id): enrolled, forgotten, renamed, error...",
        ("classifier_service",),
        ("alert_service", "facewire_console"),
    ),
    Channel(
        "identify-requests",
        "identify/req",
        "IdentifyRequest",
        "Search by photo; the answer goes to the MQTT 5 response topic (or reply_to) with the correlation data.",
        ("facewire_console",),
        ("classifier_service",),
    ),
    Channel(
        "identify-responses",
        "identify/resp/{client}",
        "IdentifyResponse",
        "The answer to one identify request: per photo, its faces and their candidates.",
        ("classifier_service",),
        ("facewire_console",),
    ),
    Channel(
        "homeassistant-node",
        "homeassistant/nodes/{node}/last_person",
        "SensorState",
        "Home Assistant sensor state: the last person seen on a node (plain text, as Home Assistant reads it).",
        ("facewire_console",),
        ("homeassistant",),
        retained=True,
    ),
    Channel(
        "homeassistant-person",
        "homeassistant/people/{person}/last_node",
        "SensorState",
        "Home Assistant sensor state: the node a person was last seen on (plain text).",
        ("facewire_console",),
        ("homeassistant",),
        retained=True,
    ),
    Channel(
        "homeassistant-attributes",
        "homeassistant/{kind}/{subject}/{sensor}/attributes",
        "SensorAttributes",
        "Home Assistant attributes (score, time, camera) of the sensor whose state topic this extends.",
        ("facewire_console",),
        ("homeassistant",),
        retained=True,
    ),
)
