"""Home Assistant MQTT discovery: configs carry the discovery schema fields with the right types; live bridge."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from facewire.schema.gallery import GalleryEvent
from facewire.topics import Topics, matches
from facewire_console.broker import LocalBroker
from facewire_console.monitor.homeassistant import HomeAssistantBridge, Publication, gallery_people, slug
from harness.processes import Collector
from tests.monitor_stream import TOPICS, facewire_command, make_results, make_stream, publish

# The fields of Home Assistant's MQTT discovery schema we use, with their types
# (https://www.home-assistant.io/integrations/sensor.mqtt/ and /integrations/mqtt/#mqtt-discovery):
# default_entity_id replaced object_id in Home Assistant 2025.10; origin names the software.
COMMON_FIELDS: dict[str, type] = {
    "name": str,
    "unique_id": str,
    "default_entity_id": str,
    "state_topic": str,
    "device": dict,
    "origin": dict,
}
AVAILABILITY_FIELDS: dict[str, type] = {
    "availability_topic": str,
    "availability_template": str,
    "payload_available": str,
    "payload_not_available": str,
}
OBJECT_ID = r"[a-z0-9_]+"


def check_config(topic: str, config: dict[str, Any], discovery_prefix: str = "homeassistant") -> None:
    """Assert a discovery message is well formed (topic layout, required fields and their types)."""
    parts = topic.split("/")
    assert parts[0] == discovery_prefix and parts[1] in {"sensor", "binary_sensor"} and parts[-1] == "config", topic
    assert parts[-2] == config["unique_id"] and len(parts) == 5
    for key, kind in COMMON_FIELDS.items():
        assert isinstance(config.get(key), kind), (key, config)
    assert "object_id" not in config, "deprecated by Home Assistant 2025.10"
    domain, object_id = config["default_entity_id"].split(".")
    assert domain == parts[1] and re.fullmatch(OBJECT_ID, object_id), config["default_entity_id"]
    assert config["origin"]["name"] == "facewire" and isinstance(config["origin"]["sw_version"], str)
    if domain == "sensor":
        assert config["json_attributes_topic"] == TOPICS.ha_attributes(config["state_topic"])
    assert config["unique_id"].startswith(config["device"]["identifiers"][0])
    identifiers = config["device"]["identifiers"]
    assert isinstance(identifiers, list) and identifiers and all(isinstance(i, str) for i in identifiers)
    assert isinstance(config["device"]["name"], str)
    assert "#" not in config["state_topic"] and "+" not in config["state_topic"]


def test_node_configs_have_discovery_fields_and_availability() -> None:
    bridge = HomeAssistantBridge(Topics(), "homeassistant", "facewire")
    (sensor_topic, sensor), (online_topic, online) = bridge.node_configs("cam-front")
    check_config(sensor_topic, sensor)
    check_config(online_topic, online)
    for key, kind in AVAILABILITY_FIELDS.items():
        assert isinstance(sensor[key], kind), key
    assert sensor["availability_topic"] == TOPICS.node_status("cam-front")
    assert (sensor["payload_available"], sensor["payload_not_available"]) == ("online", "offline")
    assert sensor["state_topic"] == TOPICS.ha_node_state("cam-front")
    assert online["device_class"] == "connectivity" and online["state_topic"] == TOPICS.node_status("cam-front")
    assert sensor["device"] == online["device"]  # one HA device per node with both entities


def test_person_config_and_unique_ids_are_distinct() -> None:
    bridge = HomeAssistantBridge(Topics(), "ha", "Site 1")
    topic, config = bridge.person_config("Lin-Manuel Miranda")
    check_config(topic, config, "ha")
    for key, kind in AVAILABILITY_FIELDS.items():
        assert isinstance(config[key], kind), key
    assert config["availability_topic"] == bridge.status_topic
    assert config["default_entity_id"] == "sensor.site_1_person_lin_manuel_miranda_last_node"
    ids = {c["unique_id"] for _t, c in bridge.node_configs("a")} | {bridge.person_config("a")[1]["unique_id"]}
    assert len(ids) == 3


def test_bridge_publishes_configs_once_and_states_on_change() -> None:
    bridge = HomeAssistantBridge(Topics(), "homeassistant", "facewire")
    published = bridge.start(["Alex_Lacamoire"])
    assert published[0].topic == bridge.status_topic and json.loads(published[0].payload)["state"] == "online"
    for topic, payload, _retain in make_stream(time.time()).messages:
        published += bridge.ingest(topic, payload)
    by_topic: dict[str, list[bytes]] = {}
    for item in published:
        assert item.retain
        by_topic.setdefault(item.topic, []).append(item.payload)
    configs = [t for t in by_topic if t.endswith("/config")]
    assert all(len(by_topic[t]) == 1 for t in configs)  # discovery sent once per entity
    assert len(configs) == 3 * 2 + 2  # cam-front, cam-back, cam-old x 2 entities; two people
    assert by_topic[TOPICS.ha_person_state(slug("Alex_Lacamoire"))][-1] in {b"cam-front", b"cam-back"}
    assert TOPICS.ha_person_state("unknown") not in by_topic  # unknown faces are not a person
    for node in ("cam-front", "cam-back"):
        last = [r for r in make_results(12, 0.0) if r.node == node][-1]
        assert by_topic[TOPICS.ha_node_state(node)][-1] == (last.name if last.known else "stranger").encode()
        seen = json.loads(by_topic[TOPICS.ha_attributes(TOPICS.ha_node_state(node))][-1])
        assert seen["camera"] == node and 0 <= seen["score"] <= 1 and seen["time"].endswith("+00:00")
    assert b"unknown" not in {p for t, ps in by_topic.items() if "/homeassistant/" in t for p in ps}


def test_gallery_people_are_its_folders(tmp_path: Path) -> None:
    for name in ("Bob", "Alice", ".hidden"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert gallery_people(tmp_path) == ["Alice", "Bob"]
    assert gallery_people(tmp_path / "missing") == []


def test_monitor_ha_publishes_retained_discovery_on_a_real_broker(broker: LocalBroker, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    (gallery / "Alex_Lacamoire").mkdir(parents=True)
    process = subprocess.Popen(
        [
            *facewire_command(),
            "monitor",
            "--broker",
            broker.url,
            "--json",
            "--duration",
            "2",
            "--ha",
            "--gallery",
            gallery,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "connected to" in process.stderr.readline()
    time.sleep(0.2)
    publish(broker.url, make_stream(time.time()).messages)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    # A subscriber that comes later (Home Assistant restarting) gets everything as retained messages.
    late = Collector(
        broker.url, ["homeassistant/#", "facewire/homeassistant/#", "facewire/services/+/+/status"]
    ).start()
    try:
        found = late.wait_for(lambda t: t.endswith("/config"), count=8, timeout=10)
        assert len(found) == 8, [t for t, _p in found]
        for topic, payload in found:
            check_config(topic, json.loads(payload))
        states = dict(late.wait_for(lambda t: matches("facewire/homeassistant/#", t), count=5, timeout=5))
        assert states[TOPICS.ha_person_state("alex_lacamoire")] in {b"cam-front", b"cam-back"}
        status = dict(late.matching(lambda t: t == "facewire/services/homeassistant/facewire/status"))
        assert json.loads(status["facewire/services/homeassistant/facewire/status"])["state"] == "offline"
    finally:
        late.stop()


def test_standalone_homeassistant_command(broker: LocalBroker, tmp_path: Path) -> None:
    """``facewire homeassistant`` runs the bridge alone and says offline when stopped."""
    status_topic = "facewire/services/homeassistant/site_a/status"
    watcher = Collector(broker.url, ["homeassistant/#", status_topic]).start()
    env = {**os.environ, "FACEWIRE_HOMEASSISTANT__INSTANCE": "site-a"}
    gallery = tmp_path / "gallery"
    (gallery / "Alex_Lacamoire").mkdir(parents=True)
    process = subprocess.Popen(
        [*facewire_command(), "homeassistant", "--broker", broker.url, "--gallery", str(gallery)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert watcher.wait_for(lambda t: t == status_topic, count=1, timeout=30)
        publish(broker.url, make_stream(time.time()).messages)
        configs = watcher.wait_for(lambda t: t.endswith("/config"), count=8, timeout=10)
        assert len(configs) == 8
        assert all(t.startswith("homeassistant/") and "/site_a/" in t for t, _p in configs)
        for topic, payload in configs:
            check_config(topic, json.loads(payload))
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
    statuses = watcher.wait_for(lambda t: t == status_topic, count=2, timeout=10)
    watcher.stop()
    states = [json.loads(p)["state"] for _t, p in statuses]
    # a repeat of the same state (a retained status redelivered after a reconnect under load) is fine
    assert [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]] == ["online", "offline"], states


def test_a_stranger_is_shown_as_stranger_and_forget_clears_the_person() -> None:
    bridge = HomeAssistantBridge(Topics())
    results = make_results(6, time.time())
    published = [p for r in results for p in bridge.ingest(TOPICS.results(r.node), r.to_json())]
    strangers = {r.node for r in results if not r.known}
    assert strangers and all(Publication(TOPICS.ha_node_state(n), b"stranger") in published for n in strangers)
    fresh = max(r.ts for r in results)
    person = next(r for r in reversed(results) if r.known)
    named = replace(person, seq=100, ts=fresh + 1.0)
    bridge.ingest(TOPICS.results(named.node), named.to_json())  # the node's state names the person now
    event = GalleryEvent("forgotten", "cmd-1", "a", op="forget", details={"person": person.name})
    cleared = bridge.ingest(TOPICS.gallery_events(), event.to_json())
    config_topic, _config = bridge.person_config(person.name)
    person_state = TOPICS.ha_person_state(slug(person.name))
    node_state = TOPICS.ha_node_state(named.node)
    expected = {config_topic, person_state, TOPICS.ha_attributes(person_state), node_state}
    expected.add(TOPICS.ha_attributes(node_state))
    assert {p.topic for p in cleared} == expected
    assert all(p.payload == b"" and p.retain for p in cleared), "empty retained payloads delete retained topics"
    assert person.name not in bridge.people
    rename = GalleryEvent("renamed", "cmd-2", "a", op="rename", details={"person": "Bob", "to": "Robert"})
    assert {p.topic for p in bridge.ingest(TOPICS.gallery_events(), rename.to_json())} >= {
        bridge.person_config("Bob")[0]
    }
