"""Home Assistant MQTT discovery: a sensor per node (last person seen, online state) and per person (last node).

Pure core: :class:`HomeAssistantBridge` turns monitored messages into the
(topic, payload, retain) publications Home Assistant needs: retained discovery
configs under ``<discovery_prefix>/<component>/<instance>/<unique_id>/config``,
retained plain-text states under ``<prefix>/homeassistant/`` and, beside each
state, retained JSON attributes (score, time, camera). A node's sensors are
available while its own status topic says ``online`` (its last will says
``offline``); a person's sensor is available while this bridge is. A face
nobody is enrolled as shows as ``stranger`` (Home Assistant reads the state
``unknown`` as "no value"). When a person is forgotten or renamed, their
discovery config, state and attributes are cleared (empty retained payloads),
and so is every node state that still names them.

The discovery payloads follow Home Assistant's documented MQTT discovery:
https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
(``default_entity_id``, which replaced ``object_id`` in 2025.10; the ``origin``
block; availability) and the MQTT sensor options
https://www.home-assistant.io/integrations/sensor.mqtt/ (``json_attributes_topic``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facewire import __version__
from facewire.errors import SchemaError
from facewire.schema import FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.schema.homeassistant import SensorAttributes, SensorState
from facewire.schema.status import ServiceStatus
from facewire.topics import Topics

SERVICE = "homeassistant"
STATE_TEMPLATE = "{{ value_json.state }}"
STRANGER = "stranger"  # the state of a face nobody is enrolled as
REFRESH_SECONDS = 60.0  # an unchanged state's attributes (time, score) are republished at most this often
ORIGIN = {"name": "facewire", "sw_version": __version__}
CLEARING_EVENTS = {"forgotten": "person", "renamed": "person"}  # gallery event -> the detail naming the person


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


def attributes(result: FaceResult) -> SensorAttributes:
    """A sighting's attributes in Home Assistant: score, time (ISO 8601, UTC) and camera (the node)."""
    when = datetime.fromtimestamp(result.ts, timezone.utc).isoformat(timespec="seconds")
    return SensorAttributes(round(result.score, 3), when, result.node)


class HomeAssistantBridge:
    """Builds discovery configs, sensor states and their attributes from node statuses, results and gallery events."""

    def __init__(self, topics: Topics, discovery_prefix: str = "homeassistant", instance: str = "facewire") -> None:
        self.topics = topics
        self.discovery_prefix = discovery_prefix
        self.instance = slug(instance)
        self.nodes: set[str] = set()
        self.people: set[str] = set()
        self._states: dict[str, tuple[float, str]] = {}  # state topic -> (time, value) last published
        self._attributes_sent: dict[str, float] = {}  # state topic -> time its attributes were last published

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
        if topic == self.topics.gallery_events():
            return self._gallery_event(payload)
        if self.topics.node_of(topic, "results") is None:
            return []
        try:
            result = FaceResult.from_json(payload)
        except SchemaError:
            return []
        seen = attributes(result)
        publications = self._node(result.node)
        name = result.name if result.known else STRANGER
        publications += self._state(self.topics.ha_node_state(result.node), name, seen, result.ts)
        if result.known:
            publications += self._person(result.name)
            publications += self._state(self.topics.ha_person_state(slug(result.name)), result.node, seen, result.ts)
        return publications

    def forget(self, person: str) -> list[Publication]:
        """Clear ``person``'s discovery config, state and attributes, and every node state naming them."""
        topic, _config = self.person_config(person)
        state = self.topics.ha_person_state(slug(person))
        naming = [t for t, (_ts, value) in self._states.items() if value == person and t != state]
        self.people.discard(person)
        cleared = [topic]
        for state_topic in [state, *naming]:
            self._states.pop(state_topic, None)
            self._attributes_sent.pop(state_topic, None)
            cleared += [state_topic, self.topics.ha_attributes(state_topic)]
        return [Publication(t, b"") for t in cleared]

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
        state = self.topics.ha_node_state(node)
        last_person = {
            "name": "Last person",
            "unique_id": f"{ident}_last_person",
            "default_entity_id": f"sensor.{ident}_last_person",
            "state_topic": state,
            "json_attributes_topic": self.topics.ha_attributes(state),
            "icon": "mdi:face-recognition",
            "device": device,
            "origin": ORIGIN,
            **availability,
        }
        online = {
            "name": "Online",
            "unique_id": f"{ident}_online",
            "default_entity_id": f"binary_sensor.{ident}_online",
            "state_topic": self.topics.node_status(node),
            "value_template": STATE_TEMPLATE,
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            "device": device,
            "origin": ORIGIN,
        }
        return [
            (self._config_topic("sensor", last_person), last_person),
            (self._config_topic("binary_sensor", online), online),
        ]

    def person_config(self, person: str) -> tuple[str, dict[str, Any]]:
        """(config topic, config) of a person's last-seen-node sensor."""
        ident = f"{self.instance}_person_{slug(person)}"
        state = self.topics.ha_person_state(slug(person))
        config = {
            "name": "Last seen node",
            "unique_id": f"{ident}_last_node",
            "default_entity_id": f"sensor.{ident}_last_node",
            "state_topic": state,
            "json_attributes_topic": self.topics.ha_attributes(state),
            "icon": "mdi:account-search",
            "availability_topic": self.status_topic,
            "availability_template": STATE_TEMPLATE,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {"identifiers": [ident], "name": person, "manufacturer": "facewire", "model": "enrolled person"},
            "origin": ORIGIN,
        }
        return self._config_topic("sensor", config), config

    def _gallery_event(self, payload: bytes) -> list[Publication]:
        try:
            event = GalleryEvent.from_json(payload)
        except SchemaError:
            return []
        person = event.get(CLEARING_EVENTS[event.event]) if event.event in CLEARING_EVENTS else None
        # Every replica reports the command: clearing again is harmless, and retained topics of a person
        # this bridge never saw (published before it restarted) are cleared too.
        return self.forget(person) if isinstance(person, str) and person else []

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

    def _state(self, topic: str, value: str, seen: SensorAttributes, ts: float) -> list[Publication]:
        """The state when it changes, its attributes then or once REFRESH_SECONDS passed; never older over newer."""
        last_ts, last_value = self._states.get(topic, (float("-inf"), ""))
        if ts < last_ts:
            return []
        self._states[topic] = (ts, value)
        publications = [] if value == last_value else [Publication(topic, SensorState(value).to_text())]
        if publications or ts - self._attributes_sent.get(topic, float("-inf")) >= REFRESH_SECONDS:
            self._attributes_sent[topic] = ts
            publications.append(Publication(self.topics.ha_attributes(topic), seen.to_json()))
        return publications

    def _status_node(self, topic: str) -> str | None:
        parts, head = topic.split("/"), self.topics.prefix.split("/")
        if len(parts) == len(head) + 3 and parts[: len(head)] == head and parts[len(head)] == "nodes":
            return parts[-2] if parts[-1] == "status" else None
        return None

    def _config_topic(self, component: str, config: dict[str, Any]) -> str:
        return f"{self.discovery_prefix}/{component}/{self.instance}/{config['unique_id']}/config"
