"""The compose stack's broker configuration, run by the real mosquitto binary.

docker-compose.yml starts mosquitto with ``sh broker/docker-start.sh``; these
tests run that same script, with temporary folders and free ports in place of
the container's paths and port 1883, and talk to the result through facewire's
own MQTT client: passwords from files (Docker secrets), the ACL, the shared
subscription the classifier replicas use, the health check, persistence.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml

from facewire.config import MqttSettings
from facewire.errors import BrokerError, ConfigError
from facewire.mqtt import MqttConnection, Will, broker_password
from facewire.topics import Topics
from facewire_console.broker import free_port
from harness.processes import ROOT, run_module
from tests.broker_support import RoleClient

START_SCRIPT = ROOT / "broker" / "docker-start.sh"
SERVICE_PASSWORD = "service-secret-1"
EDGE_USER, EDGE_PASSWORD = "front-door", "door-secret-2"
TOPICS = Topics()


@dataclass
class ContainerBroker:
    port: int
    health_port: int
    tls_port: int
    secrets: Path
    certs: Path
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def settings(self, username: str | None = None, password_file: Path | None = None) -> MqttSettings:
        return MqttSettings(url=self.url, username=username, password_file=password_file, connect_timeout=5)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if found is None:
        pytest.fail("mosquitto is not installed (scripts/setup.sh installs it)")
    return found


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-start.sh / mosquitto exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on {port}: {log.read_text()[-2000:]}")


@pytest.fixture
def container_broker(tmp_path: Path) -> Iterator[ContainerBroker]:
    """broker/docker-start.sh as the container runs it, with temporary paths and free ports."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mqtt_password").write_text(SERVICE_PASSWORD + "\n")
    (secrets / "mqtt_edge_users").write_text(f"# one line per edge node\n{EDGE_USER}:{EDGE_PASSWORD}\n\n")
    (secrets / "edge_password").write_text(EDGE_PASSWORD + "\n")
    certs = tmp_path / "certs"  # the documented command: scripts/make-certs.sh secrets/certs
    subprocess.run([str(ROOT / "scripts/make-certs.sh"), str(certs)], check=True, capture_output=True)
    port, health_port, tls_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "CONF_DIR": str(ROOT / "broker"),
        "RUN_DIR": str(tmp_path / "run"),
        "DATA_DIR": str(tmp_path / "data"),
        "SECRETS_DIR": str(secrets),
        "CERTS_DIR": str(certs),
        "MQTT_PORT": str(port),
        "MQTTS_PORT": str(tls_port),
        "HEALTH_PORT": str(health_port),
        "RUN_USER": pwd.getpwuid(os.geteuid()).pw_name,
        "MOSQUITTO": mosquitto_binary(),
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin",
    }
    log = tmp_path / "broker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(["sh", str(START_SCRIPT)], env=env, stdout=output, stderr=subprocess.STDOUT)
    wait_listening(port, process, log)
    wait_listening(health_port, process, log)
    wait_listening(tls_port, process, log)
    broker = ContainerBroker(port, health_port, tls_port, secrets, certs, tmp_path / "data", env, process)
    yield broker
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Inbox:
    """Messages one connection received, by topic."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def record(self, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def wait_for(self, topic: str, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [payload for t, payload in self.messages if t == topic]
            if found:
                return found
            time.sleep(0.05)
        return []


def test_the_compose_health_check_passes(container_broker: ContainerBroker) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    argv = compose["services"]["mosquitto"]["healthcheck"]["test"][1:]
    default_port = re.search(r"HEALTH_PORT=\$\{HEALTH_PORT:-(\d+)\}", START_SCRIPT.read_text())
    assert default_port and argv[argv.index("-p") + 1] == default_port.group(1)
    argv[argv.index("-p") + 1] = str(container_broker.health_port)
    argv = [arg.replace("$$", "$") for arg in argv]  # compose's escape of '$'
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert "seconds" in result.stdout


def test_the_network_listener_refuses_anonymous_and_wrong_passwords(
    container_broker: ContainerBroker, tmp_path: Path
) -> None:
    with pytest.raises(BrokerError, match="refused"):
        MqttConnection(container_broker.settings(), "anonymous").connect()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    with pytest.raises(BrokerError, match="refused"):
        MqttConnection(container_broker.settings("facewire", wrong), "wrong-password").connect()


def test_services_and_edges_log_in_with_secrets_and_edges_publish_only_as_themselves(
    container_broker: ContainerBroker,
) -> None:
    inbox = Inbox()
    service = MqttConnection(
        container_broker.settings("facewire", container_broker.secrets / "mqtt_password"), "classifier-test"
    )
    service.subscribe(TOPICS.embeddings_shared("classifiers"), inbox.record)
    service.subscribe(TOPICS.node_status_all(), inbox.record)
    service.connect()
    edge = MqttConnection(
        container_broker.settings(EDGE_USER, container_broker.secrets / "edge_password"),
        f"edge-{EDGE_USER}",
        will=Will(TOPICS.node_status(EDGE_USER), b'{"state": "offline"}'),
    )
    edge.connect()
    try:
        time.sleep(0.3)
        edge.publish(TOPICS.node_status(EDGE_USER), b'{"state": "online"}', retain=True)
        edge.publish(TOPICS.embeddings("back-door"), b"impersonation")  # someone else's topic
        edge.publish(TOPICS.embeddings(EDGE_USER), b"face")
        assert inbox.wait_for(TOPICS.embeddings(EDGE_USER)) == [b"face"]
        assert inbox.wait_for(TOPICS.node_status(EDGE_USER)) == [b'{"state": "online"}']
        time.sleep(0.5)
        assert inbox.wait_for(TOPICS.embeddings("back-door"), timeout=0.1) == []
    finally:
        edge.close()
        service.close()


def test_persistence_goes_to_the_data_volume(container_broker: ContainerBroker) -> None:
    publisher = MqttConnection(
        container_broker.settings("facewire", container_broker.secrets / "mqtt_password"), "retainer"
    )
    publisher.connect()
    publisher.publish(TOPICS.node_status("kept"), b'{"state": "online"}', retain=True).wait_for_publish(5)
    publisher.close()
    container_broker.process.terminate()  # SIGTERM: mosquitto writes its persistence file
    container_broker.process.wait(10)
    assert (container_broker.data_dir / "mosquitto.db").is_file()


def test_password_file_wins_and_is_read_to_the_end_of_its_first_line(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret with spaces\r\nignored\n")
    settings = MqttSettings(username="u", password="from-env", password_file=secret)
    assert broker_password(settings) == "s3cret with spaces"
    assert broker_password(MqttSettings(username="u", password="from-env")) == "from-env"


@pytest.mark.parametrize("content", [None, "", "\nsecond line\n"])
def test_a_missing_or_empty_password_file_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    secret = tmp_path / "secret"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError, match="password_file"):
        MqttConnection(MqttSettings(username="u", password_file=secret), "client")


def tls_settings(broker: ContainerBroker, username: str, password_file: Path) -> MqttSettings:
    """An edge node's settings as the edge template has them: mqtts:// and the stack's CA certificate."""
    url = f"mqtts://127.0.0.1:{broker.tls_port}"
    return MqttSettings(
        url=url, username=username, password_file=password_file, tls_ca=broker.certs / "ca.crt", connect_timeout=5
    )


def test_the_tls_listener_takes_mqtts_and_refuses_plain_text(container_broker: ContainerBroker) -> None:
    inbox = Inbox()
    service = MqttConnection(
        container_broker.settings("facewire", container_broker.secrets / "mqtt_password"), "tls-watch"
    )
    service.subscribe(TOPICS.embeddings(EDGE_USER), inbox.record)
    service.connect()
    edge = MqttConnection(tls_settings(container_broker, EDGE_USER, container_broker.secrets / "edge_password"), "tls")
    edge.connect()
    try:
        edge.publish(TOPICS.embeddings(EDGE_USER), b"over tls").wait_for_publish(5)
        assert inbox.wait_for(TOPICS.embeddings(EDGE_USER)) == [b"over tls"]
    finally:
        edge.close()
        service.close()
    plain = tls_settings(container_broker, EDGE_USER, container_broker.secrets / "edge_password")
    plain = plain.model_copy(update={"url": f"mqtt://127.0.0.1:{container_broker.tls_port}", "tls_ca": None})
    with pytest.raises(BrokerError):
        MqttConnection(plain, "plain-text-on-the-tls-port").connect()


def test_the_health_listener_lets_an_anonymous_client_read_the_uptime_only(container_broker: ContainerBroker) -> None:
    anonymous = RoleClient(MqttSettings(url=f"mqtt://127.0.0.1:{container_broker.health_port}"), "in-container")
    try:
        assert anonymous.connack == 0
        assert anonymous.publish(TOPICS.gallery_cmd("admin")) == 0x87
        assert anonymous.publish(TOPICS.embeddings(EDGE_USER)) == 0x87
    finally:
        anonymous.close()


def test_add_node_and_reload_while_a_client_stays_connected(container_broker: ContainerBroker, tmp_path: Path) -> None:
    """`facewire broker add-node` on the stack's hashed mqtt_edge_users, then `docker-start.sh reload` (SIGHUP)."""
    drops: list[bool] = []
    inbox = Inbox()
    service = MqttConnection(container_broker.settings("facewire", container_broker.secrets / "mqtt_password"), "stays")
    service.on_connection_change = lambda up: None if up else drops.append(up)
    service.subscribe(TOPICS.embeddings("cam-9"), inbox.record)
    service.connect()
    try:
        edge_users = container_broker.secrets / "mqtt_edge_users"
        added = run_module(
            "facewire_console",
            ["broker", "add-node", "cam-9", "--passwd", str(edge_users), "--secrets-dir", str(tmp_path / "nodes")],
            {},
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        assert "cam-9:$7$" in edge_users.read_text() and f"{EDGE_USER}:{EDGE_PASSWORD}" in edge_users.read_text()
        new_node = tls_settings(container_broker, "cam-9", tmp_path / "nodes" / "cam-9.password")
        with pytest.raises(BrokerError, match="refused"):
            MqttConnection(new_node, "cam-9-before-reload").connect()
        reload = subprocess.run(
            ["sh", str(START_SCRIPT), "reload"], env=container_broker.env, capture_output=True, text=True, timeout=30
        )
        assert reload.returncode == 0, reload.stderr
        node = MqttConnection(new_node, "cam-9")
        node.connect()
        try:
            node.publish(TOPICS.embeddings("cam-9"), b"first face").wait_for_publish(5)
            assert inbox.wait_for(TOPICS.embeddings("cam-9")) == [b"first face"], "published, and still received"
        finally:
            node.close()
        old_edge = MqttConnection(
            tls_settings(container_broker, EDGE_USER, container_broker.secrets / "edge_password"), "old"
        )
        old_edge.connect()  # the plain 'node:password' line is still hashed in
        old_edge.close()
        assert drops == [], "the reload dropped a connected client"
        assert container_broker.process.poll() is None
    finally:
        service.close()


def test_without_certificates_the_broker_starts_with_no_lan_listener(
    container_broker: ContainerBroker, tmp_path: Path
) -> None:
    port, health_port, tls_port = free_port(), free_port(), free_port()
    (tmp_path / "no-certs").mkdir()
    env = {**container_broker.env, "CERTS_DIR": str(tmp_path / "no-certs"), "RUN_DIR": str(tmp_path / "run2")}
    env |= {"DATA_DIR": str(tmp_path / "data2"), "MQTT_PORT": str(port), "MQTTS_PORT": str(tls_port)}
    env["HEALTH_PORT"] = str(health_port)
    log = tmp_path / "broker2.log"
    with log.open("wb") as output:
        process = subprocess.Popen(["sh", str(START_SCRIPT)], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process, log)
        plain = container_broker.settings("facewire", container_broker.secrets / "mqtt_password")
        service = MqttConnection(plain.model_copy(update={"url": f"mqtt://127.0.0.1:{port}"}), "compose-service")
        service.connect()  # the compose listener works
        service.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
        assert "no TLS listener for the LAN" in log.read_text()
    finally:
        process.terminate()
        process.wait(10)
