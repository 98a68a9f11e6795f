"""A real mosquitto running the shipped secure config (TLS, passwords, broker/acl) and an MQTT 5 client
that records the broker's PUBACK and SUBACK reason codes."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from facewire.config import MqttSettings
from facewire_console.broker import LocalBroker, free_port
from facewire_console.broker_auth import ACL_FILE, add_account, render_secure_config
from harness.processes import ROOT

ROLES = ("admin", "facewire", "classifier", "viewer", "homeassistant", "api", "frigate", "frigate_nvr")


@dataclass
class SecureBroker:
    """mosquitto with ``facewire broker secure-config``: one TLS listener, passwords, the shipped ACL."""

    broker: LocalBroker
    port: int
    conf_dir: Path
    passwords: dict[str, Path]

    def settings(self, user: str | None, client_cert: str | None = None) -> MqttSettings:
        certs = self.conf_dir / "certs"
        return MqttSettings(
            url=f"mqtts://127.0.0.1:{self.port}",
            username=user,
            password_file=self.passwords[user] if user else None,
            tls_ca=certs / "ca.crt",
            tls_cert=certs / f"{client_cert or user}.crt",
            tls_key=certs / f"{client_cert or user}.key",
            connect_timeout=5.0,
        )

    def stop(self) -> None:
        self.broker.stop()


def account_env(settings: MqttSettings) -> dict[str, str]:
    """The environment that logs a facewire process in with ``settings`` (URL, account, TLS)."""
    return {
        "FACEWIRE_MQTT__URL": settings.url,
        "FACEWIRE_MQTT__USERNAME": str(settings.username),
        "FACEWIRE_MQTT__PASSWORD_FILE": str(settings.password_file),
        "FACEWIRE_MQTT__TLS_CA": str(settings.tls_ca),
        "FACEWIRE_MQTT__TLS_CERT": str(settings.tls_cert),
        "FACEWIRE_MQTT__TLS_KEY": str(settings.tls_key),
    }


def start_secure_broker(workdir: Path, accounts: list[str]) -> SecureBroker:
    """Certificates (scripts/make-certs.sh), hashed accounts, broker/acl, and mosquitto on a free port."""
    conf_dir = workdir / "secure"
    subprocess.run([str(ROOT / "scripts/make-certs.sh"), str(conf_dir / "certs"), *accounts], check=True)
    passwords = {user: add_account(conf_dir / "passwd", user, conf_dir / "secrets")[1] for user in accounts}
    shutil.copy(ACL_FILE, conf_dir / "acl")
    port = free_port()
    config = workdir / "secure.conf"
    config.write_text(render_secure_config(conf_dir, port))
    broker = LocalBroker(workdir / "broker", port=port, config=config, dev_listener=False).start()
    return SecureBroker(broker, port, conf_dir, passwords)


class RoleClient:
    """One MQTT 5 connection of one account: QoS 1 publishes with their PUBACK codes, SUBACK codes, messages."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.connack = -1
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if settings.username:
            assert settings.password_file is not None
            client.username_pw_set(settings.username, settings.password_file.read_text().strip())
        if settings.url.startswith("mqtts://"):
            client.tls_set(
                ca_certs=str(settings.tls_ca),
                certfile=str(settings.tls_cert) if settings.tls_cert else None,
                keyfile=str(settings.tls_key) if settings.tls_key else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        host, port = settings.url.split("://", 1)[1].rsplit(":", 1)
        self.client = client
        client.connect(host, int(port))
        client.loop_start()
        self._connected.wait(10)

    def _on_connect(self, _c: paho.Client, _u: object, _f: object, reason: paho.ReasonCode, _p: object) -> None:
        self.connack = reason.value
        self._connected.set()

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, reason: paho.ReasonCode, _p: object) -> None:
        with self._lock:
            self.pubacks[mid] = reason.value

    def _on_subscribe(self, _c: paho.Client, _u: object, mid: int, reasons: list[paho.ReasonCode], _p: object) -> None:
        with self._lock:
            self.subacks[mid] = [r.value for r in reasons]

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.received.append((message.topic, bytes(message.payload)))

    def publish(self, topic: str, payload: bytes = b"probe", retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK reason code (>= 0x80: refused)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._wait(lambda: self.pubacks.get(info.mid))

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1 and return the SUBACK reason code (>= 0x80: refused)."""
        _result, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return self._wait(lambda: next(iter(self.subacks.get(mid, [])), None))

    def topics_received(self) -> set[str]:
        with self._lock:
            return {topic for topic, _payload in self.received}

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload in self.received if t == topic]

    def _wait(self, read: Callable[[], int | None]) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self._lock:
                value = read()
            if value is not None:
                return int(value)
            time.sleep(0.01)
        raise TimeoutError("no answer from the broker within 10 s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
