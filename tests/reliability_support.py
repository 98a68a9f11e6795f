"""Helpers of the fault tests: a result counter, a durable collector, a synthetic stream (more in harness.faults)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho

from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire.replay import ask_for_replay_when_messages_missed
from facewire.schema import FaceEmbedding, FaceResult
from facewire.topics import Topics
from tests.test_schema import embedding, unit


@dataclass
class ResultCounter:
    """A persistent-session subscriber of facewire/results/+ counting answers per (node, seq); dedups nothing.

    Like every results subscriber of ours it asks for a replay when a reconnect finds its session gone
    (facewire.replay), unless ``ask_replay`` is False.
    """

    url: str
    client_id: str
    ask_replay: bool = True
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connection: MqttConnection | None = None

    def start(self) -> ResultCounter:
        self._connection = MqttConnection(MqttSettings(url=self.url), self.client_id, session_expiry=3600)
        self._connection.subscribe("facewire/results/+", self._record)
        if self.ask_replay:
            ask_for_replay_when_messages_missed(self._connection, Topics(), self.client_id)
        self._connection.connect()
        time.sleep(0.2)
        return self

    def _record(self, message: paho.MQTTMessage) -> None:
        key = FaceResult.from_json(bytes(message.payload)).key
        with self._lock:
            self.counts[key] += 1

    def wait_for(self, keys: set[tuple[str, int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not keys <= set(self.counts):
            time.sleep(0.2)

    def missing(self, keys: set[tuple[str, int]]) -> set[tuple[str, int]]:
        with self._lock:
            return keys - set(self.counts)

    def reconnect_after(self, seconds: float) -> None:
        """Wait ``seconds`` before each reconnect (paho's back-off floor): a subscriber that comes back late."""
        assert self._connection is not None
        self._connection.client.reconnect_delay_set(int(seconds), max(int(seconds), 30))

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

    def duplicates(self) -> int:
        with self._lock:
            return sum(count - 1 for count in self.counts.values())

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()


def synthetic_stream(node: str, count: int) -> list[bytes]:
    """``count`` valid, distinct FaceEmbedding payloads of ``node`` with seq 0..count-1."""
    now = time.time()
    return [embedding(node=node, seq=seq, ts=now, emb=unit(seed=seq % 997)).to_msgpack() for seq in range(count)]


@dataclass
class DurableCollector:
    """A persistent-session subscriber of one embeddings topic recording every seq it gets, duplicates included."""

    url: str
    topic: str
    seqs: list[int] = field(default_factory=list)
    _connection: MqttConnection | None = None

    def start(self) -> DurableCollector:
        self._connection = MqttConnection(MqttSettings(url=self.url), "test-durable-collector", session_expiry=3600)
        self._connection.subscribe(self.topic, lambda m: self.seqs.append(FaceEmbedding.from_msgpack(m.payload).seq))
        self._connection.connect()
        time.sleep(0.2)
        return self

    def wait_for_seqs(self, count: int, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(set(self.seqs)) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.seqs)

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()


def spool_depth_logged(log: Path) -> int:
    """The largest spool depth the edge agent's heartbeat log lines reported."""
    return max((int(n) for n in re.findall(r"spool_depth=(\d+)", log.read_text())), default=0)
