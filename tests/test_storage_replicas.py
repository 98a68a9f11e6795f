"""Replicas of the real alert-service processes on one database, on both engines (SQLite file, real PostgreSQL):
two recorders in one $share group give exactly the rows one recorder would; two alert services raise each
incident once; the operator commands read the same database through its URL."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from alert_service.recorder import Recorder
from alert_service.store import LogQuery, LogRow
from alert_service.store_factory import open_alert_store, open_result_log
from facewire.config import MqttSettings, RecorderSettings
from facewire.erasure import erasure_marker
from facewire.mqtt import MqttConnection
from facewire.schema import Alert, FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import Collector, run_module, start_module
from tests.alert_support import T0, face, log_tail, publish_all, results_payloads, wait_for_online, wait_until
from tests.pg_support import PostgresServer

ALERTS = '[alerts]\nunknown_count = 3\nunknown_window = 10.0\ncooldown = 30.0\nwatchlist = ["Colin_Powell"]\n'


def start(role: str, broker: LocalBroker, url: str, instance: str, work: Path) -> subprocess.Popen[bytes]:
    """``alert-service run ROLE`` with the database given only by its URL (environment, as in a container)."""
    config = work / "facewire.toml"
    config.write_text(ALERTS)
    env = {"FACEWIRE_RECORDER__DATABASE_URL": url, "FACEWIRE_ALERTS__DATABASE_URL": url}
    args = ["run", role, "--broker", broker.url, "--config", str(config), "--instance", instance]
    process = start_module("alert_service", args, env, work / f"{instance}.log")
    wait_for_online(broker.url, role, instance)
    return process


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(20)


def stream() -> list[FaceResult]:
    names = ["unknown", "Tony_Blair", "Serena_Williams", "unknown", "Colin_Powell"]
    return [face(f"cam{seq % 3}", seq, names[seq % 5], 0.3 + (seq % 7) * 0.08) for seq in range(300)]


def test_two_recorders_in_one_share_group_write_the_rows_of_one(
    broker: LocalBroker, tmp_path: Path, database_url: str
) -> None:
    results = stream()
    replicas = [start("recorder", broker, database_url, name, tmp_path) for name in ("rec-a", "rec-b")]
    status = Collector(broker.url, [Topics().service_status("recorder", "+")]).start()
    log = open_result_log(database_url)
    try:
        # every result, then a third of them again (redelivery), then a restart of one replica mid-stream
        publish_all(broker.url, results_payloads(results[:200] + results[:200:3]))
        replicas[1].kill()
        replicas[1].wait()
        publish_all(broker.url, results_payloads(results[150:]))
        replicas[1] = start("recorder", broker, database_url, "rec-b", tmp_path)
        publish_all(broker.url, results_payloads(results[::5]))
        logs = lambda: log_tail(tmp_path / "rec-a.log") + log_tail(tmp_path / "rec-b.log")  # noqa: E731
        assert wait_until(lambda: log.count() >= len(results), 60), logs()
        time.sleep(1.0)  # a duplicate would land by now
        recorded = sorted(log.query(LogQuery(limit=0)), key=lambda r: (r.node, r.seq))
        sent = (FaceResult.from_json(r.to_json()) for r in results)  # as on the wire (scores rounded)
        assert recorded == sorted((LogRow.from_result(r) for r in sent), key=lambda r: (r.node, r.seq)), logs()
        forgotten = GalleryEvent("forgotten", "f1", "c1", "forget", details={"person": "Serena_Williams"}).to_json()
        publish_all(broker.url, [(Topics().gallery_events(), forgotten)])
        assert wait_until(lambda: log.last_seen("Serena_Williams") is None, 15), logs()
        marker = erasure_marker("Serena_Williams")
        assert len(list(log.query(LogQuery(person=marker, limit=0)))) == 60
    finally:
        log.close()
        stop(replicas)
    received: dict[str, int] = {}
    for _topic, payload in status.wait_for(lambda _t: True, 6, 10):
        data = json.loads(payload)
        received[data["instance"]] = max(received.get(data["instance"], 0), data.get("received", 0))
    status.stop()
    assert all(process.returncode == 0 for process in replicas)
    assert received.get("rec-a", 0) > 0 and received.get("rec-b", 0) > 0  # the group split the stream
    env = {"FACEWIRE_RECORDER__DATABASE_URL": database_url}
    exported = run_module(
        "facewire_console", ["log", "--person", "Tony_Blair", "--format", "json", "--limit", "0"], env
    )
    assert exported.returncode == 0, exported.stderr
    assert sorted(r["seq"] for r in json.loads(exported.stdout)) == [s for s in range(300) if s % 5 == 1]


def test_two_alert_services_raise_each_incident_once(broker: LocalBroker, tmp_path: Path, database_url: str) -> None:
    first = [face("cam1", seq) for seq in (0, 2, 4, 6)]
    known = [face("cam2", seq, "Tony_Blair", 0.72) for seq in range(1, 10)]
    second = [face("cam1", seq) for seq in (100, 101, 102)]
    watched = [face("cam2", 50, "Colin_Powell", 0.61)]
    incidents = first + known + first + second + watched + second + watched  # delivered twice
    collector = Collector(broker.url, [Topics().alerts("+")]).start()
    replicas = [start("alerts", broker, database_url, name, tmp_path) for name in ("alerts-a", "alerts-b")]
    try:
        publish_all(broker.url, results_payloads(incidents))
        collector.wait_for(lambda _t: True, 3, 30)
        time.sleep(3.0)  # a duplicate alert would arrive by now
        alerts = [Alert.from_json(payload) for _topic, payload in collector.matching(lambda _t: True)]
    finally:
        stop(replicas)
        collector.stop()
    logs = log_tail(tmp_path / "alerts-a.log") + log_tail(tmp_path / "alerts-b.log")
    by_rule = sorted((a.rule, a.node, min(e.ts for e in a.evidence)) for a in alerts)
    assert by_rule == [("unknown", "cam1", T0), ("unknown", "cam1", T0 + 100), ("watchlist", "cam2", T0 + 50)], logs
    store = open_alert_store(database_url)
    try:
        stored = store.alerts(10)
    finally:
        store.close()
    assert sorted(s.alert.id for s in stored) == sorted(a.id for a in alerts)
    assert all(s.published for s in stored)
    listed = run_module("facewire_console", ["alerts", "--json"], {"FACEWIRE_ALERTS__DATABASE_URL": database_url})
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3, listed.stderr


def test_a_postgresql_restart_delays_results_but_loses_none(
    broker: LocalBroker, postgres_server: PostgresServer
) -> None:
    """In-process recorder: while the server is down, batches are retried and not acked; none is lost."""
    server = postgres_server
    url = server.create_database()
    store = open_result_log(url)
    settings = RecorderSettings(database_url=url, batch_wait_ms=50, retention_interval=3600)
    connection = MqttConnection(MqttSettings(url=broker.url), "recorder-pg", manual_ack=True, receive_maximum=100)
    recorder = Recorder(store, connection, Topics(), settings, "pg")
    connection.set_will(recorder.will())
    connection.connect()
    recorder.start()
    try:
        publish_all(broker.url, results_payloads([face("cam1", seq) for seq in range(5)]))
        assert wait_until(lambda: recorder.inserted == 5, 10)
        server.halt()
        try:
            publish_all(broker.url, results_payloads([face("cam1", seq) for seq in range(5, 15)]))
            time.sleep(2.0)
            assert recorder.inserted == 5 and connection.connected
        finally:
            server.resume()
        assert wait_until(lambda: recorder.inserted == 15, 60), recorder.counters()
        assert store.count() == 15
    finally:
        recorder.stop()
        store.close()
