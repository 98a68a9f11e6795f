"""Spine benchmark: edge frames/s on the bundled clip, classifier messages/s through a real broker,
bytes per embedding message. Speeds are reported with a baseline measured in the same run.

    .venv/bin/python -m bench.bench_spine [--messages 5000]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np

from bench.common import Counter, write_json
from edge_agent.pipeline import EdgePipeline
from facewire.config import EdgeSettings, ModelSettings, MqttSettings
from facewire.faces import create_analyzer
from facewire.mqtt import MqttConnection
from facewire.schema import FaceEmbedding
from facewire.sources import open_frames
from facewire_console.broker import LocalBroker
from facewire_console.demo import SAMPLE_DIR
from harness.processes import RunningClassifier

CLIP = SAMPLE_DIR / "short_hamilton_clip.mp4"


def decode_fps() -> float:
    """Baseline: frames/s of decoding the clip alone."""
    capture = cv2.VideoCapture(str(CLIP))
    start, frames = time.perf_counter(), 0
    while capture.read()[0]:
        frames += 1
    return frames / (time.perf_counter() - start)


def edge_fps() -> dict[str, float]:
    """The edge pipeline (decode, detect, align, embed, track, dedup) on the clip, no network."""
    analyzer = create_analyzer(ModelSettings(), det_threshold=0.7, min_face=40)
    seq = iter(range(1_000_000))
    pipeline = EdgePipeline(analyzer, EdgeSettings(node_id="bench"), lambda: next(seq))
    start = time.perf_counter()
    for frame in open_frames(str(CLIP)):
        pipeline.process(frame)
    seconds = time.perf_counter() - start
    counters = pipeline.counters
    return {
        "frames": counters.frames,
        "faces": counters.faces,
        "published": counters.published,
        "fps": counters.frames / seconds,
        "faces_per_s": counters.faces / seconds,
    }


def synthetic(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        FaceEmbedding(
            "bench", i, time.time(), i, 1, (0, 0, 80, 80), 0.9, {"size": 80.0}, "sface-2021dec", v
        ).to_msgpack()
        for i, v in enumerate(vectors)
    ]


def pump(url: str, topic: str, payloads: list[bytes], counter_topic: str) -> float:
    """Publish every payload at QoS 1 and return messages/s until all arrive on ``counter_topic``."""
    counter = Counter(url, counter_topic, len(payloads))
    counter.connection.connect()
    publisher = MqttConnection(MqttSettings(url=url), "bench-publisher")
    publisher.connect()
    start = time.perf_counter()
    for payload in payloads:
        publisher.publish(topic, payload)
    counter.done.wait(300)
    rate = counter.count / (counter.last - start)
    publisher.close()
    counter.connection.close()
    return rate


@click.command()
@click.option("--messages", default=5000, show_default=True)
def main(messages: int) -> None:
    """Run the spine benchmark and write bench/results/spine.json."""
    payloads = synthetic(messages)
    baseline_decode = decode_fps()
    edge = edge_fps()
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        raw = pump(broker.url, "facewire/bench/raw", payloads, "facewire/bench/raw")
        classifier = RunningClassifier(broker.url, SAMPLE_DIR / "enroll", Path(tmp)).start()
        try:
            classified = pump(broker.url, "facewire/embeddings/bench", payloads, "facewire/results/+")
        finally:
            classifier.stop()
    data = {
        "edge": {**edge, "decode_only_fps": baseline_decode, "ratio_to_decode": edge["fps"] / baseline_decode},
        "classifier": {
            "messages": messages,
            "results_per_s": classified,
            "broker_only_per_s": raw,
            "ratio_to_broker_only": classified / raw,
        },
        "embedding_message_bytes": len(payloads[0]),
    }
    path = write_json("spine", data)
    print(
        f"edge: {edge['fps']:.1f} frames/s ({edge['faces_per_s']:.1f} faces/s); "
        f"decode alone {baseline_decode:.0f} frames/s"
    )
    print(
        f"classifier: {classified:.0f} results/s; broker alone (same payloads, QoS 1) {raw:.0f} msg/s "
        f"-> ratio {classified / raw:.2f}"
    )
    print(f"embedding message: {len(payloads[0])} bytes; written {path}")


if __name__ == "__main__":
    main()
