"""Home Assistant MQTT discovery: a sensor per node (last person seen, online state) and per person (last node).

Pure core: :class:`HomeAssistantBridge` turns monitored messages into the
(topic, payload, retain) publications Home Assistant needs: retained discovery
configs under ``<discovery_prefix>/<component>/<instance>/<object_id>/config``
and retained state topics under ``<prefix>/homeassistant/``. A node's sensors
are available while its own status topic says ``online`` (its last will says
``offline``); a person's sensor is available while this bridge is.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facewire import __version__
from facewire.errors import SchemaError
from facewire.schema import FaceResult
from facewire.schema.homeassistant import SensorState
from facewire.schema.status import ServiceStatus
from facewire.topics import Topics

SERVICE = "homeassistant"
STATE_TEMPLATE = "{{ value_json.state }}"


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    retain: bool = True


def slug(name: str) -> str:
    """A Home Assistant object id part: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "x"


def gallery_people(gallery: Path | None) -> list[str]:
    """People enrolled as ``GALLERY/<person>/`` folders (empty when there is no such folder)."""
    if gallery is None or not gallery.is_dir():
        return []
    return sorted(p.name for p in gallery.iterdir() if p.is_dir() and not p.name.startswith("."))


class HomeAssistantBridge:
    """Builds discovery configs and sensor states from node statuses and results."""

    def __init__(self, topics: Topics, discovery_prefix: str = "homeassistant", instance: str = "facewire") -> None:
        self.topics = topics
        self.discovery_prefix = discovery_prefix
        self.instance = slug(instance)
        self.nodes: set[str] = set()
        self.people: set[str] = set()
        self._states: dict[str, tuple[float, str]] = {}

    @property
    def status_topic(self) -> str:
        return self.topics.service_status(SERVICE, self.instance)

    def status(self, state: str) -> Publication:
        """This bridge's retained status (the availability of the person sensors)."""
        status = ServiceStatus(self.instance, state, time.time(), {"version": __version__})
        return Publication(self.status_topic, status.to_json())

    def start(self, people: Iterable[str] = ()) -> list[Publication]:
        """Online status plus discovery configs for people known up front (e.g. the gallery's)."""
        publications = [self.status("online")]
        for person in people:
            publications += self._person(person)
        return publications

    def ingest(self, topic: str, payload: bytes) -> list[Publication]:
        """What to publish after one monitored message (nothing for messages that change no sensor)."""
        node = self._status_node(topic)
        if node is not None:
            return self._node(node)
        if self.topics.node_of(topic, "results") is None:
            return []
        try:
            result = FaceResult.from_json(payload)
        except SchemaError:
            return []
        publications = self._node(result.node)
        publications += self._state(self.topics.ha_node_state(result.node), result.name, result.ts)
        if result.known:
            publications += self._person(result.name)
            publications += self._state(self.topics.ha_person_state(slug(result.name)), result.node, result.ts)
        return publications

    def node_configs(self, node: str) -> list[tuple[str, dict[str, Any]]]:
        """(config topic, config) of a node's two entities: last person seen, and connectivity."""
        ident = f"{self.instance}_node_{slug(node)}"
        availability = {
            "availability_topic": self.topics.node_status(node),
            "availability_template": STATE_TEMPLATE,
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        device = {"identifiers": [ident], "name": f"facewire {node}", "manufacturer": "facewire", "model": "edge node"}
        last_person = {
            "name": "Last person",
            "unique_id": f"{ident}_last_person",
            "object_id": f"{ident}_last_person",
            "state_topic": self.topics.ha_node_state(node),
            "icon": "mdi:face-recognition",
            "device": device,
            **availability,
        }
        online = {
            "name": "Online",
            "unique_id": f"{ident}_online",
            "object_id": f"{ident}_online",
            "state_topic": self.topics.node_status(node),
            "value_template": STATE_TEMPLATE,
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            "device": device,
        }
        return [
            (self._config_topic("sensor", last_person), last_person),
            (self._config_topic("binary_sensor", online), online),
        ]

    def person_config(self, person: str) -> tuple[str, dict[str, Any]]:
        """(config topic, config) of a person's last-seen-node sensor."""
        ident = f"{self.instance}_person_{slug(person)}"
        config = {
            "name": "Last seen node",
            "unique_id": f"{ident}_last_node",
            "object_id": f"{ident}_last_node",
            "state_topic": self.topics.ha_person_state(slug(person)),
            "icon": "mdi:account-search",
            "availability_topic": self.status_topic,
            "availability_template": STATE_TEMPLATE,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {"identifiers": [ident], "name": person, "manufacturer": "facewire", "model": "enrolled person"},
        }
        return self._config_topic("sensor", config), config

    def _node(self, node: str) -> list[Publication]:
        if node in self.nodes:
            return []
        self.nodes.add(node)
        return [Publication(topic, json.dumps(config).encode()) for topic, config in self.node_configs(node)]

    def _person(self, person: str) -> list[Publication]:
        if person in self.people:
            return []
        self.people.add(person)
        topic, config = self.person_config(person)
        return [Publication(topic, json.dumps(config).encode())]

    def _state(self, topic: str, value: str, ts: float) -> list[Publication]:
        """Publish ``value`` when it changes; an older result (redelivered, late) never overwrites a newer one."""
        last_ts, last_value = self._states.get(topic, (float("-inf"), ""))
        if ts < last_ts:
            return []
        self._states[topic] = (ts, value)
        return [] if value == last_value else [Publication(topic, SensorState(value).to_text())]

    def _status_node(self, topic: str) -> str | None:
        parts, head = topic.split("/"), self.topics.prefix.split("/")
        if len(parts) == len(head) + 3 and parts[: len(head)] == head and parts[len(head)] == "nodes":
            return parts[-2] if parts[-1] == "status" else None
        return None

    def _config_topic(self, component: str, config: dict[str, Any]) -> str:
        return f"{self.discovery_prefix}/{component}/{self.instance}/{config['object_id']}/config"
