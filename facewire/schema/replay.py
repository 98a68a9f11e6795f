"""Replay requests on ``<prefix>/replay/results``: a results subscriber whose broker session was lost asks
the classifiers to publish their recent results again.

mosquitto persists by snapshot. A broker that crashes before its next snapshot forgets the persistent
sessions made or changed since the last one, with the subscriptions and the messages queued in them.
A subscriber that reconnects to find its session gone (CONNACK session_present 0) missed whatever was
published between the crash and its new SUBSCRIBE; a classifier's own re-publish after its reconnect
may have run before that SUBSCRIBE. The request names the time the subscriber lost its connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from facewire.errors import SchemaError
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_REQUEST_BYTES = 64 * 1024
MAX_CLIENT = 128


@dataclass(frozen=True)
class ReplayRequest:
    """Publish again the results classified at or after ``since`` (unix seconds); ``client`` asks."""

    client: str
    since: float
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return read.dump_json({"v": self.v, "client": self.client, "since": self.since})

    @classmethod
    def from_json(cls, payload: bytes) -> ReplayRequest:
        """Decode and validate a request; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_REQUEST_BYTES)
        read.check_version(data)
        read.check_fields(data, {"v", "client", "since"})
        since = read.number(data, "since")
        if since < 0:
            raise SchemaError("out-of-range", "since must be a non-negative unix time")
        return cls(client=read.text(data, "client", MAX_CLIENT), since=since)
