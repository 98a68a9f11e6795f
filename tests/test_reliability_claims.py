"""Claims of RELIABILITY.md that had a test which could not fail, or none (issue 18, item 9)."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire_console.broker import LocalBroker
from harness.processes import Collector, RunningClassifier, start_module
from tests.broker_support import start_secure_broker
from tests.reliability_support import ResultCounter, synthetic_stream
from tests.test_spine_integration import split_sample

COUNT = 300


def publish_all(url: str, topic: str, payloads: list[bytes]) -> None:
    connection = MqttConnection(MqttSettings(url=url), "test-publisher")
    connection.connect()
    try:
        infos = [connection.publish(topic, payload) for payload in payloads]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        connection.close()


def test_classifier_sigterm_leaves_nothing_for_the_broker_to_redeliver(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path
) -> None:
    """Answer 300 embeddings, SIGTERM, restart with the same instance (session): a single embedding left
    unacknowledged would be redelivered to the restarted classifier and answered a second time."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    keys = {("cam-1", seq) for seq in range(COUNT)}
    results = ResultCounter(broker.url, "test-results").start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="flush").start()
    try:
        publish_all(broker.url, "facewire/embeddings/cam-1", synthetic_stream("cam-1", COUNT))
        results.wait_for(keys, timeout=60)
        assert classifier.stop() == 0
        answered = sum(results.counts.values())
        classifier.start()
        time.sleep(5.0)  # the resumed session's queue arrives right after CONNACK
    finally:
        assert classifier.stop() == 0
        results.stop()
    assert results.missing(keys) == set()
    assert answered == COUNT, "each embedding answered once before the stop"
    assert sum(results.counts.values()) == COUNT, "nothing was redelivered after the SIGTERM"


def test_heartbeat_and_status_report_spool_dropped(tmp_path: Path, sample_dir: Path) -> None:
    """A real edge agent with a 3-entry spool and no broker drops the oldest; its heartbeat log says how many,
    and so does the retained status it publishes once the broker is there."""
    broker = LocalBroker(tmp_path / "broker")
    env = {
        "FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state"),
        "FACEWIRE_EDGE__HEARTBEAT_SECONDS": "1",
        "FACEWIRE_EDGE__SPOOL_MAX_MESSAGES": "3",
        "COLUMNS": "1000",  # one log record per line
    }
    args = ["run", "--node-id", "cam-1", "--source", str(sample_dir / "lfw"), "--max-fps", "10"]
    edge = start_module("edge_agent", [*args, "--broker", broker.url, "-v"], env, tmp_path / "edge.log")
    try:
        deadline = time.monotonic() + 60
        logged: list[int] = []
        while time.monotonic() < deadline and not any(logged):
            time.sleep(0.5)
            logged = [int(n) for n in re.findall(r"spool_dropped=(\d+)", (tmp_path / "edge.log").read_text())]
        broker.start()
        status = Collector(broker.url, ["facewire/nodes/cam-1/status"]).start()
        reported = status.wait_for(lambda _t: True, 1, timeout=40)
        status.stop()
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(60) == 0
    finally:
        if edge.poll() is None:
            edge.kill()
        broker.stop()
    assert max(logged, default=0) > 0, (tmp_path / "edge.log").read_text()[-2000:]
    assert reported and json.loads(reported[-1][1])["spool_dropped"] >= max(logged)


def test_a_node_reads_its_own_results_and_no_other_nodes(tmp_path: Path, sample_dir: Path) -> None:
    """The shipped ACL with a classifier answering: cam-2 gets its own result; cam-1, subscribed to every
    result and to cam-2's by name, gets its own and nothing of cam-2's."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    secure = start_secure_broker(tmp_path, ["cam-1", "cam-2", "classifier", "admin"])
    own = secure.settings("classifier")
    tls = ["--broker", own.url, "--tls-ca", str(own.tls_ca), "--tls-cert", str(own.tls_cert)]
    tls += ["--tls-key", str(own.tls_key)]
    env = {"FACEWIRE_MQTT__USERNAME": "classifier", "FACEWIRE_MQTT__PASSWORD_FILE": str(own.password_file)}
    classifier = RunningClassifier(
        own.url, gallery, tmp_path, instance="acl", extra=tls, env=env, watch=secure.settings("admin")
    ).start()
    victim = Collector(own.url, ["facewire/results/cam-2"], secure.settings("cam-2")).start()
    spy = Collector(own.url, ["facewire/results/+", "facewire/results/cam-2"], secure.settings("cam-1")).start()
    try:
        for node in ("cam-1", "cam-2"):
            sender = MqttConnection(secure.settings(node), f"{node}-sender")
            sender.connect()
            sender.publish(f"facewire/embeddings/{node}", synthetic_stream(node, 1)[0]).wait_for_publish(10)
            sender.close()
        victim_got = victim.wait_for(lambda _t: True, 1, timeout=30)
        spy_got = spy.wait_for(lambda _t: True, 1, timeout=30)
        time.sleep(2.0)
    finally:
        victim.stop()
        spy.stop()
        assert classifier.stop() == 0
        secure.stop()
    assert [t for t, _p in victim_got] == ["facewire/results/cam-2"], "the classifier answered cam-2"
    assert {t for t, _p in spy.messages} == {"facewire/results/cam-1"} and spy_got, "cam-1 read only its own"
