"""Helpers of the alert-service tests: FaceResults to replay, processes to run, waiting on conditions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire.schema import Candidate, FaceResult
from facewire.topics import Topics

T0 = float(int(time.time()) - 3 * 3600)  # recent: the recorder's default retention keeps it


def face(node: str, seq: int, name: str = "unknown", score: float = 0.3, ts: float | None = None) -> FaceResult:
    """A FaceResult as the classifier publishes it (threshold 0.45; 'unknown' means not known)."""
    known = name != "unknown"
    return FaceResult(
        node=node,
        seq=seq,
        track=seq // 10,
        frame=seq,
        ts=T0 + seq if ts is None else ts,
        name=name,
        score=score,
        known=known,
        threshold=0.45,
        model="sface-2021dec",
        gallery_version="g1",
        classified_at=(T0 + seq if ts is None else ts) + 0.05,
        latency_ms=3.0,
        bbox=(10.0, 20.0, 80.0, 80.0),
        candidates=(Candidate(name if known else "Tony_Blair", score), Candidate("Colin_Powell", score - 0.1)),
    )


def publish_all(
    url: str, payloads: list[tuple[str, bytes]], client_id: str = "test-replay", retain: bool = False
) -> None:
    """Publish (topic, payload) pairs at QoS 1 in order and wait for every broker ack."""
    connection = MqttConnection(MqttSettings(url=url), client_id)
    connection.connect()
    try:
        infos = [connection.publish(topic, payload, retain=retain) for topic, payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        connection.close()


def results_payloads(results: list[FaceResult]) -> list[tuple[str, bytes]]:
    topics = Topics()
    return [(topics.results(r.node), r.to_json()) for r in results]


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def wait_for_online(url: str, service: str, instance: str, timeout: float = 30.0) -> None:
    """Block until the service's retained status says online (its subscription is in place)."""
    from facewire_console.demo import wait_for_status

    wait_for_status(url, Topics().service_status(service, instance), timeout)


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
