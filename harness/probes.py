"""Probe embeddings published like an edge node's, and their results awaited, against a live classifier."""

from __future__ import annotations

import time

import numpy as np

from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire.schema import FaceEmbedding, FaceResult
from harness.processes import Collector


def probe(vector: np.ndarray, node: str, seq: int, model: str = "sface-2021dec") -> FaceEmbedding:
    """A FaceEmbedding as an edge would publish it (float16 on the wire, as decoded)."""
    emb = np.asarray(vector, dtype="<f2").astype(np.float32)
    emb /= np.linalg.norm(emb)
    # every probe is a separate photo, so its own track (the classifier averages the frames of a track)
    return FaceEmbedding(node, seq, time.time(), seq, seq, (0.0, 0.0, 100.0, 100.0), 0.9, {"size": 100.0}, model, emb)


class Probes:
    """Publishes probe embeddings like an edge node and waits for each one's result."""

    def __init__(self, url: str, node: str = "door") -> None:
        self.node = node
        self.seq = 0
        self.results = Collector(url, ["facewire/results/+"]).start()
        self.connection = MqttConnection(MqttSettings(url=url), f"test-edge-{node}")
        self.connection.connect()

    def ask(self, vector: np.ndarray, timeout: float = 20) -> FaceResult:
        self.seq += 1
        seq = self.seq
        self.connection.publish(f"facewire/embeddings/{self.node}", probe(vector, self.node, seq).to_msgpack())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _topic, payload in self.results.matching(lambda t: t.endswith("/" + self.node)):
                result = FaceResult.from_json(payload)
                if result.seq == seq:
                    return result
            time.sleep(0.02)
        raise TimeoutError(f"no result for {self.node}/{seq}")

    def stop(self) -> None:
        self.connection.close()
        self.results.stop()
