"""A refused publish is never a delivery, and a refused subscription is a start-up error (issue 18, item 1).

Every refusal here comes from a real mosquitto: the shipped ACL on the TLS listener (PUBACK 0x87), a
misconfigured copy of it, or the dynamic-security plugin (mosquitto's file ACL grants every SUBACK).
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from classifier_service.gallery.client import GalleryClient
from classifier_service.identify_service import encode_for_request, request_identify
from edge_agent.forwarder import Forwarder
from edge_agent.spool import Spool
from facewire.config import MqttSettings
from facewire.errors import BrokerError
from facewire.images import load_image
from facewire.mqtt import MqttConnection
from facewire.schema import DeadLetter, FaceResult
from facewire.schema.identify import IdentifyRequest
from facewire_console.broker import LocalBroker, free_port
from harness.processes import Collector, RunningClassifier, run_module
from tests.broker_support import RoleClient, SecureBroker, start_secure_broker
from tests.test_schema import embedding
from tests.test_spine_integration import split_sample

NOT_AUTHORIZED = 0x87

REMEDY = "user cam-1 may not publish on facewire/embeddings/cam-2: node id must equal the MQTT username"


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    """The shipped secure config: one TLS listener, passwords, broker/acl."""
    secure = start_secure_broker(tmp_path, ["cam-1", "cam-2", "classifier", "admin"])
    yield secure
    secure.stop()


def refused_rows(spool_file: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(spool_file) as db:
        return [(str(t), int(c), str(r)) for t, c, r in db.execute("SELECT topic, code, reason FROM refused")]


def test_forwarder_keeps_what_the_broker_refuses(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """A custom topic_prefix the ACL was not written for: 20 put, 0 delivered, 20 kept as refused (not 0 left)."""
    connection = MqttConnection(secure_broker.settings("cam-1"), "cam-1")
    spool = Spool(tmp_path / "spool.sqlite", max_messages=100)
    forwarder = Forwarder(spool, connection)
    connection.on_connection_change = forwarder.connection_changed
    connection.connect()
    forwarder.start()
    try:
        for seq in range(20):
            forwarder.put("site/embeddings/cam-1", embedding(seq=seq).to_msgpack())
        deadline = time.monotonic() + 20
        while spool.refused < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        forwarder.close()
        connection.close()
    assert (spool.depth, spool.refused, forwarder.refused) == (0, 20, 20)
    spool.close()
    rows = refused_rows(tmp_path / "spool.sqlite")
    assert {(t, c) for t, c, _r in rows} == {("site/embeddings/cam-1", NOT_AUTHORIZED)}
    assert "authori" in rows[0][2].lower()
    assert Spool(tmp_path / "spool.sqlite", max_messages=100).refused == 20, "the count survives a restart"


def test_edge_agent_logged_in_as_another_node_fails_and_keeps_its_faces(
    secure_broker: SecureBroker, sample_dir: Path
) -> None:
    """`--node-id cam-2 --once` logged in as cam-1: non-zero exit, one log line with the remedy, faces kept."""
    settings = secure_broker.settings("cam-1")
    state = secure_broker.conf_dir / "state"
    tls = ["--tls-ca", str(settings.tls_ca), "--tls-cert", str(settings.tls_cert), "--tls-key", str(settings.tls_key)]
    args = ["run", "--node-id", "cam-2", "--source", str(sample_dir / "lfw/unknown"), "--once", "-v"]
    watch = Collector(settings.url, ["facewire/embeddings/+"], secure_broker.settings("admin")).start()
    try:
        run = run_module(
            "edge_agent",
            [*args, "--broker", settings.url, *tls],
            {
                "FACEWIRE_MQTT__USERNAME": "cam-1",
                "FACEWIRE_MQTT__PASSWORD_FILE": str(settings.password_file),
                "FACEWIRE_EDGE__STATE_DIR": str(state),
                "FACEWIRE_EDGE__HEARTBEAT_SECONDS": "0.1",
                "COLUMNS": "1000",  # one log record per line
            },
        )
        time.sleep(0.5)
    finally:
        watch.stop()
    published = int(re.findall(r"(\d+) published", run.stderr)[-1])
    rows = refused_rows(state / "cam-2.spool.sqlite")
    assert published > 0 and watch.messages == []
    assert run.returncode == 1 and "refused" in run.stderr.splitlines()[-1], run.stderr[-2000:]
    assert run.stderr.count(REMEDY) == 1, run.stderr[-3000:]
    assert len(rows) == published and {c for _t, c, _r in rows} == {NOT_AUTHORIZED}
    assert Spool(state / "cam-2.spool.sqlite", 10).depth == 0
    counted = [int(n) for n in re.findall(r"spool_refused=(\d+)", run.stderr)]
    assert counted and max(counted) > 0, "the heartbeat counts the refused embeddings"


def login_as_classifier(secure: SecureBroker, monkeypatch: pytest.MonkeyPatch) -> tuple[MqttSettings, list[str]]:
    """The classifier account's settings, its login in the environment and its TLS flags for the command line."""
    own = secure.settings("classifier")
    monkeypatch.setenv("FACEWIRE_MQTT__USERNAME", "classifier")
    monkeypatch.setenv("FACEWIRE_MQTT__PASSWORD_FILE", str(own.password_file))
    tls = ["--broker", own.url, "--tls-ca", str(own.tls_ca), "--tls-cert", str(own.tls_cert)]
    return own, [*tls, "--tls-key", str(own.tls_key)]


def reload_acl(secure: SecureBroker, text: str) -> None:
    """Rewrite the broker's ACL and make the running mosquitto read it again (SIGHUP)."""
    (secure.conf_dir / "acl").write_text(text)
    assert secure.broker.process is not None
    secure.broker.process.send_signal(signal.SIGHUP)
    time.sleep(1.0)


def test_classifier_never_acks_an_embedding_whose_result_was_refused(
    secure_broker: SecureBroker, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ACL without the classifier's results line refuses its answer; once fixed, the broker redelivers the
    embedding to the restarted classifier, which answers it. Had the classifier acked it, it would be lost."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    own, tls = login_as_classifier(secure_broker, monkeypatch)
    shipped = (secure_broker.conf_dir / "acl").read_text()
    assert "topic write facewire/results/+\n" in shipped
    admin = secure_broker.settings("admin")
    watch = Collector(own.url, ["facewire/results/+"], admin).start()
    classifier = RunningClassifier(own.url, gallery, tmp_path, instance="acl", extra=tls, watch=admin).start()
    node = RoleClient(secure_broker.settings("cam-1"), "cam-1")
    try:
        reload_acl(secure_broker, shipped.replace("topic write facewire/results/+\n", ""))
        assert node.publish("facewire/embeddings/cam-1", embedding().to_msgpack()) < 0x80
        time.sleep(3.0)
        refused_answers = len(watch.messages)
        assert classifier.stop() == 0
        reload_acl(secure_broker, shipped)
        classifier.start()
        answered = watch.wait_for(lambda t: t == "facewire/results/cam-1", 1, timeout=30)
    finally:
        node.close()
        classifier.stop()
        watch.stop()
    assert refused_answers == 0, "the broker refused the first answer"
    assert len(answered) == 1, "the embedding was not acked: the broker redelivered it and it was answered"
    assert "publish-refused" in classifier.log.read_text()


def test_a_classifier_refused_more_than_its_receive_window_answers_everything_once_the_acl_is_fixed(
    secure_broker: SecureBroker, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 embeddings while the ACL refuses the results, through a receive window of 16 (classifier.queue_max):
    16 reach the classifier and none is acked, so the broker holds the other 24. The ACL is fixed with a SIGHUP
    and the classifier keeps running: its retries of the refused results are taken, their embeddings acked, the
    other 24 delivered, and all 40 answered. Before, the 16 held the window until the classifier reconnected."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    own, tls = login_as_classifier(secure_broker, monkeypatch)
    shipped = (secure_broker.conf_dir / "acl").read_text()
    admin = secure_broker.settings("admin")
    watch = Collector(own.url, ["facewire/results/+"], admin).start()
    classifier = RunningClassifier(
        own.url, gallery, tmp_path, instance="acl", extra=tls, watch=admin, env={"FACEWIRE_CLASSIFIER__QUEUE_MAX": "16"}
    ).start()
    node = RoleClient(secure_broker.settings("cam-1"), "cam-1")
    try:
        reload_acl(secure_broker, shipped.replace("topic write facewire/results/+\n", ""))
        for seq in range(40):
            assert node.publish("facewire/embeddings/cam-1", embedding(seq=seq).to_msgpack()) < 0x80
        time.sleep(3.0)
        refused_answers = len(watch.matching(lambda t: t.startswith("facewire/results/")))
        reload_acl(secure_broker, shipped)
        answered = watch.wait_for(lambda t: t == "facewire/results/cam-1", 40, timeout=90)
        running = classifier.process is not None and classifier.process.poll() is None
    finally:
        node.close()
        classifier.stop()
        watch.stop()
    assert refused_answers == 0, "the broker refused every answer while the ACL lacked the results line"
    assert running, "fixed without restarting the classifier"
    assert {FaceResult.from_json(p).seq for _t, p in answered} == set(range(40))
    assert "publish-refused" in classifier.log.read_text()


def test_identify_requests_whose_reply_the_broker_refuses_are_dead_lettered_not_held(
    secure_broker: SecureBroker, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 search-by-photo requests (admin) asking for the answer on a topic the classifier may not write, through
    a receive window of 16: each refused answer dead-letters its request (`reply-refused`) and acks it, and a
    request with a proper reply topic is still answered. Before, each refused answer left its request unacked,
    holding one of the slots the embeddings share: 16 of them and the classifier received nothing more."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    own, tls = login_as_classifier(secure_broker, monkeypatch)
    admin = secure_broker.settings("admin")
    letters = Collector(own.url, ["facewire/deadletter/identify"], admin).start()
    classifier = RunningClassifier(
        own.url, gallery, tmp_path, instance="idr", extra=tls, watch=admin, env={"FACEWIRE_CLASSIFIER__QUEUE_MAX": "16"}
    ).start()
    asker = MqttConnection(admin, "identify-elsewhere")
    asker.connect()
    try:
        photo = next((gallery / sorted(p.name for p in gallery.iterdir())[0]).iterdir())
        request = IdentifyRequest((encode_for_request(load_image(photo)),), 1).to_json()
        for number in range(20):
            asker.publish(
                "facewire/identify/req", request, response_topic="elsewhere/inbox", correlation_data=bytes([number])
            )
        dead = letters.wait_for(lambda _t: True, 20, timeout=120)
        answer = request_identify(admin, [load_image(photo)], 1, timeout=60)
    finally:
        asker.close()
        letters.stop()
        assert classifier.stop() == 0
    assert [DeadLetter.from_json(p).reason for _t, p in dead] == ["reply-refused"] * 20
    assert answer.ok and answer.results[0], "search by photo still answers"


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> LocalBroker:
    """mosquitto with the dynamic-security plugin; its admin may not subscribe outside $CONTROL and $SYS."""
    plugin = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
    if not plugin.exists():
        pytest.skip("mosquitto's dynamic-security plugin is not installed")
    config_file = tmp_path / "dynsec.json"
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(config_file), "admin", "pw-admin"], check=True)
    config = json.loads(config_file.read_text())
    for role in config["roles"]:
        role["acls"] = [acl for acl in role["acls"] if acl["topic"] != "#"]
    config_file.write_text(json.dumps(config))
    conf = tmp_path / "dynsec.conf"
    port = free_port()
    conf.write_text(
        f"persistence false\nlistener {port} 127.0.0.1\nplugin {plugin}\nplugin_opt_config_file {config_file}\n"
    )
    return LocalBroker(tmp_path / "broker", port=port, config=conf)


def test_a_refused_subscription_is_a_start_up_error(dynsec_broker: LocalBroker) -> None:
    with dynsec_broker:
        settings = MqttSettings(url=dynsec_broker.url, username="admin", password="pw-admin")
        allowed = MqttConnection(settings, "allowed")
        allowed.subscribe("$SYS/broker/uptime", lambda _m: None)
        allowed.connect()
        allowed.close()
        refused = MqttConnection(settings, "refused")
        refused.subscribe("facewire/results/+", lambda _m: None)
        with pytest.raises(BrokerError, match=r"refused subscription facewire/results/\+: Not authorized"):
            refused.connect()


def test_a_gallery_command_the_broker_refuses_is_an_error_not_sent(secure_broker: SecureBroker) -> None:
    """A node account may not send gallery commands: the client says so instead of waiting for an answer."""
    refused = "refused the command: cam-1 may not publish on facewire/gallery/cmd/cam-1"
    with GalleryClient(secure_broker.settings("cam-1")) as client, pytest.raises(BrokerError, match=refused):
        client.send({"op": "status"})


def test_a_gallery_command_the_broker_never_takes_is_an_error(tmp_path: Path) -> None:
    """The broker goes away before a command reaches it: after 10 s the client says so instead of returning
    an id as if the command had been sent."""
    broker = LocalBroker(tmp_path / "broker", port=free_port()).start()
    try:
        client = GalleryClient(MqttSettings(url=broker.url)).__enter__()
    finally:
        broker.stop()
    try:
        started = time.monotonic()
        with pytest.raises(BrokerError, match="did not take command"):
            client.send({"op": "status"})
        assert time.monotonic() - started >= 9.5
    finally:
        client.__exit__()


def test_a_gallery_command_no_classifier_subscribes_to_is_an_error(tmp_path: Path) -> None:
    """No classifier runs (or none has subscribed again since a broker restart): the broker takes the command
    with 0x10, no matching subscriber. The client sends it again for a while, then says so plainly (before:
    the command was dropped by the broker and the CLI waited 60 s for "0 of 1 replica(s) answered")."""
    broker = LocalBroker(tmp_path / "broker", port=free_port()).start()
    copies = Collector(broker.url, ["facewire/gallery/cmd/+"])
    try:
        with GalleryClient(MqttSettings(url=broker.url)) as client:
            with pytest.raises(BrokerError, match="no classifier subscribes to gallery commands"):
                client.send({"op": "forget", "person": "Ada"}, patience=2.0)
            copies.start()  # a subscriber now: the next command is taken at once
            assert client.send({"op": "status"})
            assert copies.wait_for(lambda _t: True, 1, timeout=10)
    finally:
        copies.stop()
        broker.stop()
