"""Helpers of the fault tests: a durable collector, a spooled synthetic stream, a recorder process."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho

from edge_agent.forwarder import Forwarder
from edge_agent.spool import Spool
from facewire.config import EdgeSettings, MqttSettings
from facewire.mqtt import MqttConnection
from facewire.schema import FaceEmbedding, FaceResult
from harness.processes import Collector, start_module, status_online
from tests.test_schema import embedding, unit

RESEND_SECONDS = EdgeSettings().resend_seconds  # the edge agent's default


@dataclass
class ResultCounter:
    """A persistent-session subscriber of facewire/results/+ counting answers per (node, seq); dedups nothing."""

    url: str
    client_id: str
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connection: MqttConnection | None = None

    def start(self) -> ResultCounter:
        self._connection = MqttConnection(MqttSettings(url=self.url), self.client_id, session_expiry=3600)
        self._connection.subscribe("facewire/results/+", self._record)
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


class SpooledPublisher:
    """The edge's real spool + forwarder, fed with synthetic embeddings instead of a camera."""

    def __init__(self, url: str, spool_path: Path, client_id: str) -> None:
        self.connection = MqttConnection(MqttSettings(url=url), client_id)
        self.spool = Spool(spool_path, max_messages=1_000_000, keep_acked=RESEND_SECONDS)
        self.forwarder = Forwarder(self.spool, self.connection, resend_seconds=RESEND_SECONDS)
        self.connection.on_connection_change = self.forwarder.connection_changed
        self.connection.connect()
        self.forwarder.start()

    def put(self, topic: str, payload: bytes) -> None:
        self.forwarder.put(topic, payload)

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.spool.depth and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.spool.depth == 0

    def close(self) -> None:
        self.forwarder.close()
        self.connection.close()
        self.spool.close()


def start_recorder(url: str, database: Path, log: Path, instance: str = "rec") -> subprocess.Popen[bytes]:
    """A real ``alert-service run recorder`` process with a stable instance, ready when this returns."""
    status = f"facewire/services/recorder/{instance}/status"
    watcher = Collector(url, [status]).start()
    args = ["run", "recorder", "--instance", instance, "--database", str(database), "--broker", url]
    process = start_module("alert_service", args, {}, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(status_online(p) for _t, p in watcher.matching(lambda t: t == status)):
                return process
            if process.poll() is not None:
                raise RuntimeError(f"recorder exited early:\n{log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"recorder not ready:\n{log.read_text()}")
    finally:
        watcher.stop()


def recorded(database: Path) -> tuple[int, int]:
    """(rows, distinct (node, seq)) in the recorder's results table."""
    with sqlite3.connect(database) as db:
        rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT node || '/' || seq) FROM results").fetchone()
    return int(rows), int(distinct)


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
