"""Home Assistant against the shipped broker (issue 19.4): the bridge as a service, HA with its own account.

No Home Assistant runs here. :class:`HomeAssistantLike` does what HA's MQTT
integration does with discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
it logs in with the ``homeassistant`` account over TLS, announces its birth on
``homeassistant/status``, subscribes to the discovery configs and then to each
entity's state, attributes and availability topics. The bridge runs as the
real ``facewire homeassistant`` process with the services account; results,
statuses and gallery events come from the accounts that publish them in a stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from facewire.schema.gallery import GalleryEvent
from facewire.topics import Topics
from tests.broker_support import RoleClient, SecureBroker, start_secure_broker
from tests.monitor_stream import facewire_command, make_results

T = Topics()
BIRTH = "homeassistant/status"


class HomeAssistantLike:
    """Discovery as Home Assistant's MQTT integration does it: configs first, then the topics they name."""

    def __init__(self, client: RoleClient) -> None:
        self.client = client
        self.configs: dict[str, dict[str, object]] = {}
        self._followed: set[str] = set()
        self._lock = threading.Lock()
        assert client.publish(BIRTH, b"online", retain=True) < 0x80, "HA's birth message"
        assert client.subscribe("homeassistant/+/+/+/config") < 0x80

    def follow(self) -> None:
        """Subscribe to the state, attributes and availability topics of every config seen so far."""
        for topic, payload in list(self.client.received):
            if not topic.endswith("/config") or not payload:
                continue
            config = json.loads(payload)
            self.configs[topic] = config
            for key in ("state_topic", "json_attributes_topic", "availability_topic"):
                name = config.get(key)
                if isinstance(name, str) and name not in self._followed:
                    self._followed.add(name)
                    assert self.client.subscribe(name) < 0x80

    def last(self, topic: str) -> bytes | None:
        found = self.client.payloads(topic)
        return found[-1] if found else None

    def wait(self, topic: str, payload: bytes, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.follow()
            if self.last(topic) == payload:
                return True
            time.sleep(0.1)
        return False


def wait_until(done: Callable[[], bool], ha: HomeAssistantLike, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        ha.follow()
        time.sleep(0.1)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SecureBroker]:
    broker = start_secure_broker(tmp_path, ["facewire", "homeassistant", "classifier", "cam-front", "cam-back"])
    yield broker
    broker.stop()


def bridge_process(stack: SecureBroker, workdir: Path) -> subprocess.Popen[bytes]:
    """``facewire homeassistant`` with the services account over TLS, as the compose service runs it."""
    own = stack.settings("facewire")
    env = {
        **os.environ,
        "FACEWIRE_MQTT__USERNAME": "facewire",
        "FACEWIRE_MQTT__PASSWORD_FILE": str(own.password_file),
        "FACEWIRE_MQTT__TLS_CA": str(own.tls_ca),
        "FACEWIRE_MQTT__TLS_CERT": str(own.tls_cert),
        "FACEWIRE_MQTT__TLS_KEY": str(own.tls_key),
    }
    with (workdir / "bridge.log").open("wb") as log:
        return subprocess.Popen(
            [*facewire_command(), "homeassistant", "--broker", own.url], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def test_home_assistant_sees_discovery_states_and_forgotten_people(stack: SecureBroker, tmp_path: Path) -> None:
    ha = HomeAssistantLike(RoleClient(stack.settings("homeassistant"), "home-assistant"))
    classifier = RoleClient(stack.settings("classifier"), "classifier")
    nodes = {n: RoleClient(stack.settings(n), n) for n in ("cam-front", "cam-back")}
    bridge = bridge_process(stack, tmp_path)
    try:
        for node, client in nodes.items():
            assert client.publish(T.node_status(node), b'{"state": "online"}', retain=True) < 0x80
        results = make_results(12, time.time())
        wait_until(lambda: len(ha.configs) == 4, ha)  # the node configs: the bridge has subscribed
        for result in results:
            assert classifier.publish(T.results(result.node), result.to_json()) < 0x80
        known = next(r for r in reversed(results) if r.known)
        wait_until(lambda: len(ha.configs) == 6, ha)
        assert len(ha.configs) == 6, sorted(ha.configs)  # 2 nodes x 2 entities, 2 people
        for node in nodes:
            last = [r for r in results if r.node == node][-1]
            expected = (last.name if last.known else "stranger").encode()
            assert ha.wait(T.ha_node_state(node), expected), (node, ha.last(T.ha_node_state(node)))
            attributes = ha.last(T.ha_attributes(T.ha_node_state(node)))
            assert attributes is not None and json.loads(attributes)["camera"] == node
            assert ha.last(T.node_status(node)) == b'{"state": "online"}', "availability reaches HA"
        person_state = next(c["state_topic"] for c in ha.configs.values() if known.name in json.dumps(c["device"]))
        assert isinstance(person_state, str) and ha.wait(person_state, known.node.encode())
        later = replace(known, node="cam-back", seq=500, ts=max(r.ts for r in results) + 1)
        assert classifier.publish(T.results("cam-back"), later.to_json()) < 0x80
        assert ha.wait(person_state, b"cam-back"), "the state change reaches HA"

        forgotten = GalleryEvent("forgotten", "c1", "a", op="forget", details={"person": known.name})
        assert classifier.publish(T.gallery_events(), forgotten.to_json()) < 0x80
        config_topic = next(t for t, c in ha.configs.items() if c["state_topic"] == person_state)
        assert ha.wait(config_topic, b"") and ha.wait(person_state, b""), "the person's retained topics are cleared"
    finally:
        bridge.terminate()
        assert bridge.wait(15) == 0, (tmp_path / "bridge.log").read_text()[-2000:]
        for client in (ha.client, classifier, *nodes.values()):
            client.close()
    late = RoleClient(stack.settings("homeassistant"), "home-assistant-restarted")
    try:
        assert late.subscribe("homeassistant/+/+/+/config") < 0x80
        time.sleep(1.0)
        retained = {t for t, p in late.received if p}
        assert config_topic not in retained and len(retained) == 5, (
            "a restarted HA gets every config but the forgotten one"
        )
    finally:
        late.close()
