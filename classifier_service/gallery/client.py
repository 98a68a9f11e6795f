"""Send gallery commands to running classifiers and wait for their events (used by the CLI and tests)."""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from typing import Any

from facewire.config import MqttSettings
from facewire.errors import BrokerError, FacewireError, SchemaError
from facewire.mqtt import Message, MqttConnection, Refusal
from facewire.schema.gallery import GalleryCommand, GalleryEvent
from facewire.topics import Topics

# The event that ends a command, per op ("not-held"/"forwarded" are intermediate).
UNHEARD_RETRY_SECONDS = 15.0  # how long a command nobody subscribes to is sent again before it is an error
FINAL_EVENTS = {
    "enroll": {"enrolled", "rejected", "error"},
    "forget": {"forgotten", "error"},
    "reload": {"reloaded", "error"},
    "reject": {"negative-added", "error"},
    "relabel": {"enrolled", "rejected", "error"},
    "name-cluster": {"enrolled", "rejected", "error"},
    "rename": {"renamed", "error"},
    "unknowns": {"unknowns"},
    "whereis": {"whereis"},
    "people": {"people"},
    "status": {"status"},
}


class GalleryTimeout(FacewireError):
    """No replica answered a gallery command in time."""


class GalleryClient:
    """One MQTT connection that publishes gallery commands and collects their events by request id."""

    def __init__(self, settings: MqttSettings, actor: str = "cli") -> None:
        self.topics = Topics(settings.topic_prefix)
        # The topic names the sender; the broker's ACL makes it the login (the classifier audits it as the actor).
        self.account = settings.username or actor
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.connection = MqttConnection(settings, f"gallery-cli-{uuid.uuid4().hex[:8]}")
        self.connection.subscribe(self.topics.gallery_events(), self._record)

    def __enter__(self) -> GalleryClient:
        self.connection.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.connection.close()

    def _record(self, message: Message) -> None:
        """Keep every valid gallery event (checked by :class:`GalleryEvent`) in its wire form."""
        try:
            event = GalleryEvent.from_json(message.payload)
        except SchemaError:
            return
        with self._cond:
            self._events.append(json.loads(event.to_json()))
            self._cond.notify_all()

    def send(self, command: dict[str, Any], patience: float = UNHEARD_RETRY_SECONDS) -> str:
        """Publish ``command`` (an id is added) and return its id once the broker has it for a classifier.

        The broker answers 0x10 when no classifier subscribes (none runs, or they are reconnecting after a
        broker restart): the command is sent again every second for ``patience`` seconds, then it is an
        error, never an id returned as if a classifier had it (commands are idempotent: a copy is harmless)."""
        request = {"id": uuid.uuid4().hex[:12], "actor": self.account, **command}
        payload = GalleryCommand.from_json(json.dumps(request).encode()).to_json()  # refused here if malformed
        topic = self.topics.gallery_cmd(self.account)
        deadline = time.monotonic() + patience
        while True:
            refused: list[Refusal] = []
            unheard: list[bool] = []
            publication = self.connection.publish(
                topic, payload, on_refused=refused.append, on_unheard=functools.partial(unheard.append, True)
            )
            if not publication.wait_for_publish(10):
                raise BrokerError(
                    f"the broker did not take command {request['id']} within 10 s (connection lost?); it stays "
                    "queued and is sent if the connection comes back while this client runs"
                )
            if refused:  # a refused publish is not a command sent (issue 18, item 1)
                raise BrokerError(f"the broker refused the command: {self.account} may not publish on {topic}")
            if not unheard:
                return str(request["id"])
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"no classifier subscribes to gallery commands on {self.connection.settings.url} (none running,"
                    f" or still reconnecting after a broker restart): command {request['id']} changed nothing"
                )
            time.sleep(1.0)

    def events(self, request_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self._events if e.get("id") == request_id]

    def wait(self, request_id: str, op: str, replicas: int, timeout: float) -> list[dict[str, Any]]:
        """Final events of ``request_id`` from ``replicas`` distinct replicas; GalleryTimeout if fewer came.
        A shared gallery (PostgreSQL) has one replica apply a change: the others count once ``served``."""
        final = FINAL_EVENTS[op]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                done = {e["instance"]: e for e in self._events if e.get("id") == request_id and e.get("event") in final}
                served = {e["instance"] for e in self._events if e.get("id") == request_id and e["event"] == "served"}
                if done and len(served | set(done)) >= replicas:
                    return list(done.values())
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [e.get("event") for e in self._events if e.get("id") == request_id]
                    raise GalleryTimeout(
                        f"{op}: {len(done)} of {replicas} replica(s) answered within {timeout:g}s (events seen: {seen})"
                    )
                self._cond.wait(min(left, 0.2))

    def request(self, command: dict[str, Any], replicas: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        """``send`` then ``wait``."""
        request_id = self.send(command, patience=min(timeout, UNHEARD_RETRY_SECONDS))
        return self.wait(request_id, str(command["op"]), replicas, timeout)

    def gather(self, command: dict[str, Any], quiet: float, timeout: float) -> list[dict[str, Any]]:
        """Send and collect final events from every replica that answers (until ``quiet`` s pass with none new)."""
        request_id = self.send(command, patience=min(timeout, UNHEARD_RETRY_SECONDS))
        final = FINAL_EVENTS[str(command["op"])]
        deadline, last_count, last_change = time.monotonic() + timeout, 0, time.monotonic()
        while time.monotonic() < deadline:
            found = [e for e in self.events(request_id) if e.get("event") in final]
            if len(found) != last_count:
                last_count, last_change = len(found), time.monotonic()
            if found and time.monotonic() - last_change >= quiet:
                return found
            time.sleep(0.05)
        found = [e for e in self.events(request_id) if e.get("event") in final]
        if not found:
            raise GalleryTimeout(f"{command['op']}: no classifier answered within {timeout:g}s")
        return found
