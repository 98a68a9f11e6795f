"""Recorder replicas against a real mosquitto: a replayed stream with duplicates gives exactly its rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

from alert_service.recorder import Recorder
from alert_service.sqlite_log import SqliteResultLog
from alert_service.store import LogQuery, LogRow
from facewire.config import MqttSettings, RecorderSettings
from facewire.erasure import erasure_marker
from facewire.mqtt import MqttConnection
from facewire.schema import FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import Collector, run_module, start_module
from tests.alert_support import face, log_tail, publish_all, results_payloads, wait_for_online, wait_until


def start_recorder(broker: LocalBroker, database: Path, instance: str, work: Path) -> subprocess.Popen[bytes]:
    args = ["run", "recorder", "--broker", broker.url, "--database", str(database), "--instance", instance]
    process = start_module("alert_service", args, {}, work / f"{instance}.log")
    wait_for_online(broker.url, "recorder", instance)
    return process


def stream() -> list[FaceResult]:
    """A fixed replay: three nodes, known and unknown faces, interleaved."""
    names = ["unknown", "Tony_Blair", "Serena_Williams", "unknown", "Colin_Powell"]
    return [face(f"cam{seq % 3}", seq, names[seq % 5], 0.3 + (seq % 7) * 0.08) for seq in range(60)]


def test_two_replicas_record_each_result_exactly_once(broker: LocalBroker, tmp_path: Path) -> None:
    database = tmp_path / "results.sqlite"
    replicas = [start_recorder(broker, database, name, tmp_path) for name in ("rec-a", "rec-b")]
    collector = Collector(broker.url, [Topics().deadletter("recorder"), Topics().service_status("recorder", "+")])
    collector.start()
    results = stream()
    try:
        first, second = results[:40], results[40:]
        # every result twice (a redelivery), plus a payload that is not a FaceResult
        publish_all(broker.url, [*results_payloads(first + first[::3]), (Topics().results("cam1"), b"{not json")])
        replicas[1].kill()  # one replica dies; a restart with the same instance resumes its session
        replicas[1].wait()
        publish_all(broker.url, results_payloads(second + first[:5]))
        replicas[1] = start_recorder(broker, database, "rec-b", tmp_path)
        publish_all(broker.url, results_payloads(second[::2]))
        log = SqliteResultLog(database)
        complete = wait_until(lambda: log.count() >= len(results), 30)
        missing = {r.key for r in results} - {(r.node, r.seq) for r in log.query(LogQuery(limit=0))}
        logs = log_tail(tmp_path / "rec-a.log") + log_tail(tmp_path / "rec-b.log")
        assert complete, f"missing {sorted(missing)}: {logs}"
        recorded = sorted(log.query(LogQuery(limit=0)), key=lambda r: (r.node, r.seq))
        sent = (FaceResult.from_json(r.to_json()) for r in results)  # as on the wire (scores rounded)
        expected = sorted((LogRow.from_result(r) for r in sent), key=lambda r: (r.node, r.seq))
        assert recorded == expected
        dead = collector.wait_for(lambda t: "deadletter" in t, 1, 10)
        assert json.loads(dead[0][1])["reason"] == "not-json"
    finally:
        for process in replicas:
            process.terminate()
        for process in replicas:
            process.wait(20)
    statuses = {
        json.loads(p)["instance"]: json.loads(p)
        for _t, p in collector.wait_for(lambda t: "services/recorder" in t, 4, 10)
        if json.loads(p)["state"] == "offline"
    }
    collector.stop()
    assert all(process.returncode == 0 for process in replicas), log_tail(tmp_path / "rec-a.log")
    assert statuses["rec-a"]["received"] > 0 and statuses["rec-b"]["received"] > 0  # the group split the stream


def test_log_views_query_export_and_last_seen(broker: LocalBroker, tmp_path: Path) -> None:
    database = tmp_path / "results.sqlite"
    recorder = start_recorder(broker, database, "rec-views", tmp_path)
    try:
        publish_all(broker.url, results_payloads(stream()))
        log = SqliteResultLog(database)
        assert wait_until(lambda: log.count() == 60, 30), log_tail(tmp_path / "rec-views.log")
        # the gallery forgets a person (one event per classifier replica): the log keeps only a marker
        forgotten = GalleryEvent("forgotten", "f1", "c1", "forget", details={"person": "Serena_Williams"}).to_json()
        publish_all(broker.url, [(Topics().gallery_events(), forgotten)] * 2)
        assert wait_until(lambda: log.last_seen("Serena_Williams") is None, 15), log_tail(tmp_path / "rec-views.log")
        assert len(list(log.query(LogQuery(person=erasure_marker("Serena_Williams"), limit=0)))) == 12
    finally:
        recorder.terminate()
        recorder.wait(20)
    db = ["--database", str(database)]
    exported = run_module(
        "facewire_console", ["log", *db, "--person", "Tony_Blair", "--format", "json", "--limit", "0"], {}
    )
    assert exported.returncode == 0, exported.stderr
    rows = json.loads(exported.stdout)
    assert sorted(r["seq"] for r in rows) == [s for s in range(60) if s % 5 == 1]
    same = run_module("facewire_console", ["log", *db, "--person", "Tony_Blair", "--json", "--limit", "0"], {})
    assert same.returncode == 0 and json.loads(same.stdout) == rows, same.stderr
    csv_out = tmp_path / "unknown.csv"
    unknown_args = ["--unknown", "--node", "cam0", "--output", str(csv_out), "--format", "csv", "--limit", "0"]
    exported = run_module("facewire_console", ["log", *db, *unknown_args], {})
    assert exported.returncode == 0, exported.stderr
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("node,seq,") and len(lines) == 1 + len([s for s in range(0, 60, 3) if s % 5 in (0, 3)])
    seen = run_module("facewire_console", ["log", *db, "--last-seen", "Colin_Powell"], {})
    assert seen.returncode == 0 and "last seen on cam2" in seen.stdout and "seq 59" in seen.stdout
    assert run_module("facewire_console", ["log", *db, "--last-seen", "Nobody"], {}).returncode == 1
    table = run_module("facewire_console", ["log", *db, "--limit", "5"], {"COLUMNS": "200"})
    assert table.returncode == 0 and table.stdout.count("cam") == 5 and "Colin_Powell" in table.stdout


def test_a_locked_database_delays_results_but_loses_none(broker: LocalBroker, tmp_path: Path) -> None:
    """In-process recorder: while another process's transaction locks the file, batches are retried, not acked."""
    database = tmp_path / "results.sqlite"
    store = SqliteResultLog(database)
    store.database.db.execute("PRAGMA busy_timeout=200")  # give up on the lock quickly, so retries happen
    settings = RecorderSettings(database=database, batch_wait_ms=50, retention_interval=3600)
    connection = MqttConnection(MqttSettings(url=broker.url), "recorder-locked", manual_ack=True, receive_maximum=100)
    recorder = Recorder(store, connection, Topics(), settings, "locked")
    connection.set_will(recorder.will())
    connection.connect()
    recorder.start()
    locker = sqlite3.connect(database)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        publish_all(broker.url, results_payloads([face("cam1", seq) for seq in range(10)]))
        time.sleep(1.5)
        assert recorder.inserted == 0 and connection.connected
        locker.execute("ROLLBACK")
        assert wait_until(lambda: recorder.inserted == 10, 10)
        assert recorder.received == 10 and store.count() == 10
    finally:
        locker.close()
        recorder.stop()
        store.close()
