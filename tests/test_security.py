"""The production listener of a real mosquitto: TLS with our own CA, passwords, and the node ACL."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from facewire.config import MqttSettings
from facewire.errors import BrokerError
from facewire.mqtt import MqttConnection
from harness.processes import ROOT, Collector, RunningClassifier, run_module
from tests.broker_support import SecureBroker, start_secure_broker
from tests.test_schema import embedding
from tests.test_spine_integration import split_sample

NOT_AUTHORIZED = 0x87


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    """The rendered secure config alone: one TLS listener with passwords and broker/acl, nothing anonymous."""
    broker = start_secure_broker(tmp_path, ["cam-1", "cam-2", "facewire", "classifier", "admin"])
    yield broker
    broker.stop()


class RawClient:
    """A paho client that records PUBACK and SUBACK reason codes (MqttConnection hides them)."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.received: list[str] = []
        self._event = threading.Event()
        connection = MqttConnection(settings, client_id)
        self.client = connection.client
        connection.connect()
        self.connection = connection
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, m: self.received.append(m.topic)
        # The bulk reader under MqttConnection hands plain PUBLISH and PUBACK packets to these two instead.
        self.client.on_publish_packet = lambda topic, _payload, _qos, _retain, _mid: self.received.append(topic)
        self.client.on_puback_packet = self._on_puback

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, reason: paho.ReasonCode, _p: object) -> None:
        self.pubacks[mid] = reason.value
        self._event.set()

    def _on_puback(self, mid: int, code: int) -> None:
        self.pubacks[mid] = code
        self._event.set()

    def _on_subscribe(self, _c: paho.Client, _u: object, _m: int, reasons: list[paho.ReasonCode], _p: object) -> None:
        self.subacks.extend(r.value for r in reasons)

    def publish(self, topic: str) -> int:
        """Publish a valid embedding at QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, embedding().to_msgpack(), qos=1)
        deadline = time.monotonic() + 10
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.pubacks[info.mid]

    def close(self) -> None:
        self.connection.close()


def test_node_cannot_publish_as_another_node_or_read_its_embeddings(secure_broker: SecureBroker) -> None:
    spy = RawClient(secure_broker.settings("cam-1"), "cam-1-spy")
    victim = RawClient(secure_broker.settings("cam-2"), "cam-2")
    try:
        spy.client.subscribe("facewire/embeddings/cam-2", qos=1)
        spy.client.subscribe("facewire/results/+", qos=1)
        assert spy.publish("facewire/embeddings/cam-2") == NOT_AUTHORIZED, "broker refuses a forged node"
        assert spy.publish("facewire/nodes/cam-2/status") == NOT_AUTHORIZED
        assert spy.publish("facewire/results/cam-1") == NOT_AUTHORIZED, "a node cannot fake results"
        assert spy.publish("facewire/embeddings/cam-1") < 0x80, "its own topic is allowed"
        assert victim.publish("facewire/embeddings/cam-2") < 0x80
        time.sleep(1.0)
    finally:
        spy.close()
        victim.close()
    # mosquitto 2.0 grants the SUBACK and applies the read ACL to every message it would deliver.
    assert len(spy.subacks) == 2
    assert victim.received == [] and spy.received == [], "nothing of cam-2 (nor any result) reached cam-1"


def test_tls_round_trip_and_refusals(secure_broker: SecureBroker) -> None:
    service_tls = MqttConnection(secure_broker.settings("facewire"), "svc")
    got: list[str] = []
    service_tls.subscribe("facewire/embeddings/+", lambda m: got.append(m.topic))
    service_tls.connect()
    node = MqttConnection(secure_broker.settings("cam-1"), "cam-1")
    node.connect()
    try:
        node.publish("facewire/embeddings/cam-1", embedding(node="cam-1").to_msgpack()).wait_for_publish(10)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        node.close()
        service_tls.close()
    assert got == ["facewire/embeddings/cam-1"]
    wrong = secure_broker.settings("cam-1").model_copy(update={"password_file": secure_broker.passwords["cam-2"]})
    anonymous = secure_broker.settings(None, client_cert="cam-1")
    no_cert = secure_broker.settings("cam-1").model_copy(update={"tls_cert": None, "tls_key": None})
    for settings in (wrong, anonymous, no_cert):
        with pytest.raises(BrokerError):
            MqttConnection(settings.model_copy(update={"connect_timeout": 5.0}), "intruder").connect()


def test_edge_agent_cli_speaks_mqtts_with_credentials(secure_broker: SecureBroker, sample_dir: Path) -> None:
    settings = secure_broker.settings("cam-1")
    watch = Collector(settings.url, ["facewire/embeddings/+"], secure_broker.settings("admin")).start()
    try:
        run = run_module(
            "edge_agent",
            [
                "run",
                "--node-id",
                "cam-1",
                "--source",
                str(sample_dir / "lfw/unknown"),
                "--once",
                "--broker",
                settings.url,
                "--tls-ca",
                str(settings.tls_ca),
                "--tls-cert",
                str(settings.tls_cert),
                "--tls-key",
                str(settings.tls_key),
            ],
            {
                "FACEWIRE_MQTT__USERNAME": "cam-1",
                "FACEWIRE_MQTT__PASSWORD_FILE": str(settings.password_file),
                "FACEWIRE_EDGE__STATE_DIR": str(secure_broker.conf_dir / "state"),
            },
        )
        assert run.returncode == 0, run.stderr
        seen = watch.wait_for(lambda t: t == "facewire/embeddings/cam-1", 1, timeout=10)
    finally:
        watch.stop()
    assert seen, run.stderr


def test_classifier_with_its_own_account_answers_over_tls_and_cannot_forge_embeddings(
    secure_broker: SecureBroker, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery, _probes = split_sample(sample_dir, tmp_path)
    own = secure_broker.settings("classifier")
    monkeypatch.setenv("FACEWIRE_MQTT__USERNAME", "classifier")
    monkeypatch.setenv("FACEWIRE_MQTT__PASSWORD_FILE", str(own.password_file))
    tls = [
        "--broker",
        own.url,
        "--tls-ca",
        str(own.tls_ca),
        "--tls-cert",
        str(own.tls_cert),
        "--tls-key",
        str(own.tls_key),
    ]
    admin = secure_broker.settings("admin")
    watch = Collector(own.url, ["facewire/results/+"], admin).start()
    classifier = RunningClassifier(own.url, gallery, tmp_path, instance="sec", extra=tls, watch=admin).start()
    node = RawClient(secure_broker.settings("cam-1"), "cam-1")
    forger = RawClient(own, "classifier-forger")
    try:
        assert node.publish("facewire/embeddings/cam-1") < 0x80
        answered = watch.wait_for(lambda t: t == "facewire/results/cam-1", 1, timeout=20)
        forged = forger.publish("facewire/embeddings/cam-1")
    finally:
        forger.close()
        node.close()
        assert classifier.stop() == 0
        watch.stop()
    assert len(answered) == 1, "the classifier read through its $share group and answered over TLS"
    assert forged == NOT_AUTHORIZED, "the classifier account cannot speak for a node"


def test_add_node_cli_writes_a_hashed_account_and_a_private_password_file(tmp_path: Path) -> None:
    run = run_module(
        "facewire_console",
        ["broker", "add-node", "cam-7", "--passwd", str(tmp_path / "passwd"), "--secrets-dir", str(tmp_path / "s")],
        {},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    password = (tmp_path / "s" / "cam-7.password").read_text().strip()
    line = (tmp_path / "passwd").read_text().strip()
    assert password in run.stdout and len(password) >= 24
    assert line.startswith("cam-7:$7$") and password not in line, "stored hashed"
    assert (tmp_path / "s" / "cam-7.password").stat().st_mode & 0o777 == 0o600
    bad = run_module(
        "facewire_console", ["broker", "add-node", "../x", "--passwd", str(tmp_path / "p2")], {}, timeout=60
    )
    assert bad.returncode == 2 and "account name" in bad.stderr


def test_add_node_reloads_the_running_broker_and_keeps_its_clients(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """`facewire broker add-node NODE --reload PIDFILE`: hashed account, SIGHUP, no restart (issue 19.7)."""
    conf = secure_broker.conf_dir
    subprocess.run([str(ROOT / "scripts/make-certs.sh"), str(conf / "certs"), "cam-3"], check=True, capture_output=True)
    assert secure_broker.broker.process is not None
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{secure_broker.broker.process.pid}\n")
    stays = RawClient(secure_broker.settings("cam-1"), "cam-1-stays")
    drops: list[bool] = []
    stays.connection.on_connection_change = lambda up: None if up else drops.append(up)
    try:
        args = ["broker", "add-node", "cam-3", "--passwd", str(conf / "passwd"), "--secrets-dir", str(conf / "secrets")]
        run = run_module("facewire_console", [*args, "--reload", str(pid_file)], {}, timeout=60)
        assert run.returncode == 0 and "broker reloaded" in run.stdout, run.stderr
        secure_broker.passwords["cam-3"] = conf / "secrets" / "cam-3.password"
        node = RawClient(secure_broker.settings("cam-3"), "cam-3")
        try:
            assert node.publish("facewire/embeddings/cam-3") < 0x80, "the new node logs in and publishes"
        finally:
            node.close()
        assert stays.publish("facewire/embeddings/cam-1") < 0x80
        assert drops == [], "the reload dropped a connected client"
    finally:
        stays.close()
    for role in ("classifier", "admin"):
        refused = run_module("facewire_console", ["broker", "add-node", role, *args[3:]], {}, timeout=60)
        assert refused.returncode == 2 and "role account" in refused.stderr, refused.stderr
