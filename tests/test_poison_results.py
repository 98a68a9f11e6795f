"""A result that makes a subscriber fail is dead-lettered and acked, never redelivered forever (issue 18, item 4)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg

from alert_service.store_factory import open_result_log
from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire_console.broker import LocalBroker
from harness.faults import recorded, start_recorder
from harness.processes import Collector, start_module
from tests.test_schema import result

# Deep enough to overflow a recursive decoder (RecursionError, not a SchemaError, before issue 18).
POISON = b"[" * 100_000


def publish(url: str, topic: str, payload: bytes) -> None:
    connection = MqttConnection(MqttSettings(url=url), "test-poisoner")
    connection.connect()
    try:
        connection.publish(topic, payload).wait_for_publish(10)
    finally:
        connection.close()


def publish_many(url: str, topic: str, payloads: list[bytes]) -> None:
    connection = MqttConnection(MqttSettings(url=url), "test-poisoner")
    connection.connect()
    try:
        for info in [connection.publish(topic, payload) for payload in payloads]:
            info.wait_for_publish(10)
    finally:
        connection.close()


def test_a_poison_result_is_dead_lettered_acked_and_not_redelivered(broker: LocalBroker, tmp_path: Path) -> None:
    letters = Collector(broker.url, ["facewire/deadletter/recorder"]).start()
    database = tmp_path / "results.sqlite"
    recorder = start_recorder(broker.url, database, tmp_path / "recorder.log")
    try:
        publish(broker.url, "facewire/results/cam-1", POISON)
        first = letters.wait_for(lambda _t: True, 1, timeout=20)
        fresh = result(seq=1, ts=time.time(), classified_at=time.time())  # inside the recorder's retention
        publish(broker.url, "facewire/results/cam-1", fresh.to_json())
        deadline = time.monotonic() + 20
        while recorded(database)[0] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        recorder.terminate()
        assert recorder.wait(30) == 0
        recorder = start_recorder(broker.url, database, tmp_path / "recorder-2.log")
        time.sleep(3.0)  # a message left unacked would be redelivered to the resumed session now
    finally:
        recorder.terminate()
        recorder.wait(30)
        letters.stop()
    assert len(first) == 1, (tmp_path / "recorder.log").read_text()[-2000:]
    assert recorded(database) == (1, 1), "the next result was recorded"
    assert len(letters.messages) == 1, "acked: the broker did not hand the poison to the restarted recorder"


def test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_recorded(
    broker: LocalBroker, tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL refuses one row (a CHECK constraint an operator added; a NUL in a text column was the
    example until the schema refused control characters itself). That one result is dead-lettered and acked;
    the results batched with it and after it are recorded (before: the batch was retried forever, every later
    batch with it, and the recorder recorded nothing more)."""
    letters = Collector(broker.url, ["facewire/deadletter/recorder"]).start()
    status = "facewire/services/recorder/pg/status"
    ready = Collector(broker.url, [status]).start()
    args = ["run", "recorder", "--instance", "pg", "--broker", broker.url]
    env = {"FACEWIRE_RECORDER__DATABASE_URL": postgres_url, "FACEWIRE_RECORDER__BATCH_WAIT_MS": "500"}
    recorder = start_module("alert_service", args, env, tmp_path / "recorder.log")
    now = time.time()
    try:
        assert ready.wait_for(lambda _t: True, 1, timeout=60), (tmp_path / "recorder.log").read_text()
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute("ALTER TABLE results ADD CONSTRAINT no_refused CHECK (gallery_version <> 'refused')")
        good = [result(seq=seq, ts=now, classified_at=now).to_json() for seq in range(1, 6)]
        poison = result(seq=0, ts=now, classified_at=now, gallery_version="refused").to_json()
        publish_many(broker.url, "facewire/results/cam-1", [poison, *good])
        letter = letters.wait_for(lambda _t: True, 1, timeout=30)
        log = open_result_log(postgres_url)
        deadline = time.monotonic() + 30
        while log.count() < len(good) and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = log.count()
    finally:
        recorder.terminate()
        assert recorder.wait(30) == 0
        letters.stop()
        ready.stop()
    assert rows == len(good), (tmp_path / "recorder.log").read_text()[-2000:]
    assert len(letter) == 1 and json.loads(letter[0][1])["reason"] == "write-failed"
