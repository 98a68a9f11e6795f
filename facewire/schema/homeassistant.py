"""Home Assistant sensor states, retained under ``<prefix>/homeassistant/``.

Home Assistant shows a state topic's payload as it is, so states are plain
UTF-8 text, and every key of an attributes object as an attribute: these two
are the payloads without a version field. An empty retained payload clears a
topic (MQTT's own convention), so it is never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from facewire.errors import SchemaError
from facewire.schema import fields as read

MAX_STATE = 255  # Home Assistant's limit for a state


@dataclass(frozen=True)
class SensorState:
    """A sensor's state: a person's name (``last_person``) or a node id (``last_node``)."""

    value: str

    def to_text(self) -> bytes:
        return self.value.encode()

    @classmethod
    def from_text(cls, payload: bytes) -> SensorState:
        """Decode and validate a state; raise SchemaError with the reason otherwise."""
        if len(payload) > 4 * MAX_STATE:
            raise SchemaError("oversize", f"{len(payload)} bytes")
        try:
            value = payload.decode()
        except UnicodeDecodeError as exc:
            raise SchemaError("not-utf8", str(exc)[:120]) from exc
        if not 0 < len(value) <= MAX_STATE or not value.isprintable():
            raise SchemaError("wrong-type", f"a state is 1..{MAX_STATE} printable characters")
        return cls(value)


@dataclass(frozen=True)
class SensorAttributes:
    """A sighting's attributes beside a sensor state: score, time (ISO 8601, UTC) and camera (the node).

    Home Assistant shows every key of this JSON object as an attribute, so it carries no version field.
    """

    score: float
    time: str
    camera: str

    def to_json(self) -> bytes:
        return read.dump_json({"score": self.score, "time": self.time, "camera": self.camera})

    @classmethod
    def from_json(cls, payload: bytes) -> SensorAttributes:
        """Decode and validate attributes; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, 64 * 1024)
        read.check_fields(data, {"score", "time", "camera"})
        return cls(read.number(data, "score"), read.text(data, "time", 64), read.node(data, "camera"))
