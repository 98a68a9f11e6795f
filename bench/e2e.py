"""End-to-end benchmark: capture-to-result latency with simulated edge nodes, and the saturation point.

Simulated nodes (one MQTT connection each) replay synthetic embeddings open-loop at a fixed rate
(default 5 faces/s per node, the rate a busy camera with dedup sends) to facewire's real classifier
(bench.servers mqtt, 10k-row synthetic gallery) through one local mosquitto. Latency of a face:
``FaceResult.classified_at - ts`` (``ts`` = the moment the node published it; one machine, one
clock), and ``received - ts`` at the subscriber. Baseline in the same run: the same load straight
through the broker to the subscriber, no classifier. Saturation: the total rate is raised until
the p95 explodes (> 10x the light-load median and > 100 ms) or results fall behind (< 98 % back
within 5 s after the last send).
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import metrics
from bench.classifier import index_costs, probes, server, synthetic_gallery
from facewire.config import MqttSettings
from facewire.errors import SchemaError
from facewire.mqtt import Message, MqttConnection
from facewire.schema import FaceEmbedding, FaceResult
from facewire_console.broker import LocalBroker

GALLERY = 10_000
_levels = itertools.count()


class Latencies:
    """Collects per-face latencies of results (or raw embeddings) whose node starts with ``prefix``."""

    def __init__(self, url: str, topic: str, prefix: str, raw: bool) -> None:
        self.prefix, self.raw = prefix, raw
        self.classified: list[float] = []
        self.received: list[float] = []
        self._lock = threading.Lock()
        self.connection = MqttConnection(MqttSettings(url=url), f"bench-e2e-{prefix}")
        self.connection.subscribe(topic, self._on)
        self.connection.connect()
        time.sleep(0.3)

    def _on(self, message: Message) -> None:
        now = time.time()
        try:
            if self.raw:
                face = FaceEmbedding.from_msgpack(bytes(message.payload))
                node, ts, decided = face.node, face.ts, now
            else:
                result = FaceResult.from_json(bytes(message.payload))
                node, ts, decided = result.node, result.ts, result.classified_at
        except SchemaError:
            return
        if node.startswith(self.prefix):
            with self._lock:
                self.classified.append(1000 * (decided - ts))
                self.received.append(1000 * (now - ts))

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.received)


def replay(url: str, nodes: int, rate: float, seconds: float, vectors: np.ndarray, raw: bool) -> dict[str, Any]:
    """``nodes`` simulated nodes at ``rate`` faces/s each for ``seconds``, open loop; latency percentiles."""
    prefix = f"l{next(_levels)}n"
    topic = "facewire/bench/e2e/+" if raw else "facewire/results/+"
    collector = Latencies(url, topic, prefix, raw)
    connections = []
    for node in range(nodes):
        connection = MqttConnection(MqttSettings(url=url), f"bench-node-{prefix}{node}")
        connection.connect()
        connections.append(connection)
    total = max(1, int(nodes * rate * seconds))
    start = time.perf_counter()
    for k in range(total):
        delay = start + k / (nodes * rate) - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        node = k % nodes
        name = f"{prefix}{node}"
        face = FaceEmbedding(name, k, time.time(), k, 1, (0, 0, 80, 80), 0.9, {"size": 80.0}, "sface-2021dec",
                             vectors[k % len(vectors)])  # fmt: skip
        base = "facewire/bench/e2e" if raw else "facewire/embeddings"
        connections[node].publish(f"{base}/{name}", face.to_msgpack())
    sent_seconds = time.perf_counter() - start
    deadline = time.monotonic() + 5.0
    while collector.count < total and time.monotonic() < deadline:
        time.sleep(0.05)
    for connection in connections:
        connection.close()
    collector.connection.close()
    return {
        "nodes": nodes,
        "rate_per_node": rate,
        "target_per_s": nodes * rate,
        "achieved_send_per_s": total / sent_seconds,
        "sent": total,
        "received": collector.count,
        "classified_ms": metrics.percentiles(collector.classified),
        "received_ms": metrics.percentiles(collector.received),
    }


def saturated(level: dict[str, Any], light_p50: float) -> bool:
    """Results lag, or the p95 is over 10x the light-load median and over 100 ms."""
    p95 = level["classified_ms"]["p95"]
    lagging = level["received"] < 0.98 * level["sent"]
    return lagging or np.isnan(p95) or (p95 > 10 * light_p50 and p95 > 100.0)


def run(quick: bool, seconds: float | None = None, rate: float = 5.0, max_rate: float | None = None) -> dict[str, Any]:
    """Latency at 1/4/16 nodes, the broker-only baseline, then rising load to saturation."""
    span = seconds or (6.0 if quick else 20.0)
    steps = [200, 400, 800, 1600, 3200] if quick else [100, 200, 400, 800, 1200, 1600, 2400, 3200]
    steps = [step for step in steps if max_rate is None or step <= max_rate]
    _, _, centres = synthetic_gallery(GALLERY)
    vectors = probes(centres, 2_000, seed=3)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        _, files = index_costs(GALLERY, vectors[:200], Path(tmp))
        baseline = [replay(broker.url, n, rate, span, vectors, raw=True) for n in (1, 16)]
        args = {"npy": files["npy"], "labels": files["labels"], "url": broker.url, "instance": "bench-e2e"}
        with server("mqtt", args):
            levels = [replay(broker.url, n, rate, span, vectors, raw=False) for n in (1, 4, 16)]
            light = levels[0]["classified_ms"]["p50"]
            ramp = []
            for total in steps:
                level = replay(broker.url, 16, total / 16, max(1.0, span / 2), vectors, raw=False)
                level["saturated"] = saturated(level, light)
                ramp.append(level)
                if level["saturated"]:
                    break
    fine = [level["target_per_s"] for level in ramp if not level["saturated"]]
    return {
        "gallery": GALLERY,
        "replicas": 1,
        "broker_only": baseline,
        "levels": levels,
        "ramp": ramp,
        "saturation_per_s": {
            "highest_fine": max(fine) if fine else None,
            "first_saturated": next((lv["target_per_s"] for lv in ramp if lv["saturated"]), None),
        },
    }
