"""facewire on a second MQTT broker implementation: rumqttd (Rust), from the PyPI package ``iotcore``.

The services must run unchanged on any MQTT 5 broker with shared subscriptions
(EMQX, VerneMQ, HiveMQ, a mosquitto per site). Each MQTT feature facewire relies
on is checked here against mosquitto and against rumqttd through facewire's own
client, and a real edge -> classifier round trip runs on rumqttd.

What was looked for (see docs/deployment.md): Debian has no second MQTT 5 broker
(ejabberd's mod_mqtt has no shared subscriptions); on PyPI amqtt 0.12 speaks
MQTT 3.1.1 only and moat-lib-mqtt's broker has no last will or persistent
sessions; iotcore 0.4 embeds rumqttd 0.20, which passes everything below except
honouring a client's receive-maximum (it caps in-flight messages itself).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection, Will
from facewire.schema import FaceResult
from facewire_console.broker import LocalBroker, free_port
from facewire_console.healthcheck import main as healthcheck
from harness.processes import Collector, RunningClassifier, run_module

iotcore = pytest.importorskip("iotcore", reason="iotcore (rumqttd) is in the dev extra: pip install -e '.[dev]'")

RUMQTTD_CONFIG = """\
id = 0

[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "facewire-test"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 262144
    max_inflight_count = 100
"""


@pytest.fixture(params=["mosquitto", "rumqttd"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a running mosquitto (broker/mosquitto.conf) or rumqttd (MQTT 5 listener)."""
    if request.param == "mosquitto":
        with LocalBroker(tmp_path / "mosquitto") as local:
            yield local.url
        return
    port = free_port()
    config = tmp_path / "rumqttd.toml"
    config.write_text(RUMQTTD_CONFIG.format(port=port))
    with iotcore.Broker(config_path=str(config)):
        yield f"mqtt://127.0.0.1:{port}"


def connection(url: str, client_id: str, **kwargs: object) -> MqttConnection:
    return MqttConnection(MqttSettings(url=url, connect_timeout=5), client_id, **kwargs)  # type: ignore[arg-type]


class Received:
    """Payloads one subscription handler got, thread-safe."""

    def __init__(self, then: Callable[[paho.MQTTMessage], None] | None = None) -> None:
        self.payloads: list[bytes] = []
        self.retained: list[bool] = []
        self._lock = threading.Lock()
        self._then = then

    def __call__(self, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.payloads.append(bytes(message.payload))
            self.retained.append(bool(message.retain))
        if self._then:
            self._then(message)

    def wait(self, count: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.payloads) < count:
            time.sleep(0.05)
        with self._lock:
            return list(self.payloads)


def drop(conn: MqttConnection) -> None:
    """Vanish without DISCONNECT, as a crashed process or a pulled cable would."""
    conn.client.loop_stop()
    sock = conn.client.socket()
    if sock is not None:
        sock.close()


def test_retained_status_reaches_a_late_subscriber(broker_url: str) -> None:
    publisher = connection(broker_url, "status-publisher")
    publisher.connect()
    publisher.publish("facewire/nodes/cam/status", b"online", retain=True).wait_for_publish(5)
    publisher.close()
    got = Received()
    late = connection(broker_url, "late-subscriber")
    late.subscribe("facewire/nodes/+/status", got)
    late.connect()
    try:
        assert got.wait(1) == [b"online"] and got.retained == [True]
    finally:
        late.close()


def test_last_will_announces_a_vanished_client(broker_url: str) -> None:
    got = Received()
    watcher = connection(broker_url, "will-watcher")
    watcher.subscribe("facewire/nodes/+/status", got)
    watcher.connect()
    victim = connection(broker_url, "will-victim", will=Will("facewire/nodes/gone/status", b"offline"))
    victim.connect()
    time.sleep(0.3)
    drop(victim)
    try:
        assert got.wait(1, timeout=10) == [b"offline"]
    finally:
        watcher.close()


def test_a_shared_subscription_splits_the_stream_between_replicas(broker_url: str) -> None:
    replicas = [(connection(broker_url, f"replica-{i}"), Received()) for i in range(2)]
    for conn, got in replicas:
        conn.subscribe("$share/classifiers/facewire/embeddings/+", got)
        conn.connect()
    time.sleep(0.3)
    publisher = connection(broker_url, "edge")
    publisher.connect()
    for i in range(40):
        publisher.publish(f"facewire/embeddings/node-{i % 4}", str(i).encode())
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(len(got.payloads) for _c, got in replicas) < 40:
            time.sleep(0.05)
        delivered = sorted(int(p) for _c, got in replicas for p in got.payloads)
        assert delivered == list(range(40)), "each message exactly once across the group"
        assert all(got.payloads for _c, got in replicas), "both replicas got work"
    finally:
        publisher.close()
        for conn, _got in replicas:
            conn.close()


def test_a_persistent_session_keeps_qos1_messages_and_redelivers_unacked_ones(broker_url: str) -> None:
    first = Received()
    service = connection(broker_url, "classifier-stable", session_expiry=600, manual_ack=True)
    service.subscribe("facewire/embeddings/+", first)  # received, never acknowledged
    service.connect()
    publisher = connection(broker_url, "edge")
    publisher.connect()
    publisher.publish("facewire/embeddings/cam", b"unacked").wait_for_publish(5)
    assert first.wait(1) == [b"unacked"]
    drop(service)  # crash before the ack
    time.sleep(0.3)
    publisher.publish("facewire/embeddings/cam", b"while-away").wait_for_publish(5)
    again = connection(broker_url, "classifier-stable", session_expiry=600, manual_ack=True)
    second = Received(then=again.ack)
    again.subscribe("facewire/embeddings/+", second)
    again.connect()
    try:
        assert sorted(second.wait(2)) == [b"unacked", b"while-away"]
    finally:
        again.close()
        publisher.close()


@pytest.mark.slow
def test_edge_to_classifier_round_trip_on_rumqttd(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unchanged services on rumqttd: an edge agent's faces come back named, and the health check sees it."""
    port = free_port()
    config = tmp_path / "rumqttd.toml"
    config.write_text(RUMQTTD_CONFIG.format(port=port))
    url = f"mqtt://127.0.0.1:{port}"
    gallery = sample_dir / "enroll"
    with iotcore.Broker(config_path=str(config)):
        results = Collector(url, ["facewire/results/+", "facewire/deadletter/#"]).start()
        classifier = RunningClassifier(url, gallery, tmp_path).start()
        try:
            env = {"FACEWIRE_MQTT__URL": url}
            monkeypatch.setenv("FACEWIRE_MQTT__URL", url)  # the health check reads the service's settings
            assert healthcheck(["classifier", "--host", classifier.instance]) == 0
            assert healthcheck(["recorder", "--host", classifier.instance]) == 1  # not running
            edge = run_module(
                "edge_agent",
                ["run", "--node-id", "cam-rumqttd", "--source", str(gallery), "--once"],
                {**env, "FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state")},
            )
            assert edge.returncode == 0, edge.stderr
            published = re.search(r"(\d+) published", edge.stderr)
            assert published, edge.stderr
            expected = int(published.group(1))
            received = results.wait_for(lambda t: t.startswith("facewire/results/"), expected, timeout=60)
        finally:
            assert classifier.stop() == 0
            results.stop()
        assert healthcheck(["classifier", "--host", classifier.instance]) == 1  # stopped: status offline
        names = sorted(FaceResult.from_json(payload).name or "" for _t, payload in received)
        assert len(received) == expected >= 2
        assert {"Alex_Lacamoire", "Lin_Manuel_Miranda"} <= set(names)
        assert not results.matching(lambda t: t.startswith("facewire/deadletter"))
