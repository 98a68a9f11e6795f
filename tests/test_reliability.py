"""Fault injection against real processes and a real mosquitto: nothing lost, duplicates only where deduplicated.

The numbers these tests assert are the rows of RELIABILITY.md.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.spool import Spool
from facewire.schema import FaceEmbedding
from facewire_console.broker import LocalBroker
from harness.faults import SpooledPublisher, recorded, start_recorder
from harness.processes import Collector, RunningClassifier, start_module
from tests.reliability_support import DurableCollector, ResultCounter, spool_depth_logged, synthetic_stream
from tests.test_spine_integration import split_sample

STREAM = 10_000


def recorder_received(url: str, instance: str = "rec") -> int:
    """Raw deliveries the recorder handled (its retained offline status), duplicates included."""
    status = Collector(url, [f"facewire/services/recorder/{instance}/status"]).start()
    try:
        payloads = status.wait_for(lambda _t: True, 1, timeout=10)
    finally:
        status.stop()
    return int(json.loads(payloads[-1][1])["received"])


# --- the spool on its own -----------------------------------------------------------------------------------------


def test_spool_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_messages=100)
    ids = [spool.put("t", bytes([i])) for i in range(10)]
    spool.acknowledged(ids[0])
    spool.close()
    spool = Spool(tmp_path / "s.sqlite", max_messages=100)
    assert spool.depth == 9
    assert [e.payload for e in spool.after(0, 100)] == [bytes([i]) for i in range(1, 10)]
    assert [e.id for e in spool.after(ids[4], 2)] == ids[5:7]


def test_spool_drops_oldest_at_the_bound_and_counts_across_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_messages=5, fsync="always")
    for i in range(8):
        spool.put("t", bytes([i]))
    assert (spool.depth, spool.dropped) == (5, 3)
    assert [e.payload[0] for e in spool.after(0, 10)] == [3, 4, 5, 6, 7]
    spool.close()
    spool = Spool(tmp_path / "s.sqlite", max_messages=5)
    spool.put("t", b"\x08")
    assert (spool.depth, spool.dropped) == (5, 4)


# --- faults in the middle of a 10k stream -------------------------------------------------------------------------


def stream_with_fault(url: str, spool: Path, payloads: list[bytes], fault_at: int, fault: object) -> SpooledPublisher:
    """Publish every payload through the edge spool; call ``fault()`` after ``fault_at`` of them."""
    publisher = SpooledPublisher(url, spool, "edge-synthetic")
    for index, payload in enumerate(payloads):
        publisher.put("facewire/embeddings/cam-1", payload)
        if index == fault_at:
            fault()  # type: ignore[operator]
        if index % 200 == 0:
            time.sleep(0.02)  # a camera, not a firehose: the fault lands mid-stream
    return publisher


@pytest.mark.slow
@pytest.mark.parametrize("crash", [False, True], ids=["sigterm-restart", "kill9-restart"])
def test_broker_restart_mid_stream(tmp_path: Path, sample_dir: Path, crash: bool) -> None:
    """10k embeddings through edge spool -> classifier -> recorder; the broker restarts (same port and data) midway.

    mosquitto 2.0 persists by snapshot (autosave_interval): after a kill -9 it has lost what it acknowledged since
    the last one. The edge's re-send and the classifier's re-publish of the last 30 s restore it; raw duplicate
    results are expected and counted, the recorder (UNIQUE (node, seq)) holds each seq once.
    """
    gallery, _probes = split_sample(sample_dir, tmp_path)
    started = time.monotonic()
    broker = LocalBroker(tmp_path / "broker").start()
    keys = {("cam-1", seq) for seq in range(STREAM)}
    results = ResultCounter(broker.url, "test-results").start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1").start()
    recorder = start_recorder(broker.url, tmp_path / "results.sqlite", tmp_path / "recorder.log")

    def restart() -> None:
        broker.kill() if crash else broker.stop()
        time.sleep(1.0)
        broker.start()

    try:
        payloads = synthetic_stream("cam-1", STREAM)
        publisher = stream_with_fault(broker.url, tmp_path / "spool.sqlite", payloads, STREAM // 2, restart)
        assert publisher.wait_drained(120), f"spool still holds {publisher.spool.depth}"
        results.wait_for(keys, timeout=90)
        publisher.close()
        time.sleep(2.0)  # let the recorder commit its last batch
    finally:
        assert classifier.stop() == 0
        recorder.terminate()
        assert recorder.wait(30) == 0
        received = recorder_received(broker.url)
        results.stop()
        broker.stop()
    rows, distinct = recorded(tmp_path / "results.sqlite")
    lost = len(results.missing(keys))
    print(
        f"broker {'kill -9' if crash else 'SIGTERM'} restart: {STREAM} sent, {lost} lost,"
        f" {results.duplicates()} raw duplicate results, recorder {received} deliveries -> {rows} rows,"
        f" {time.monotonic() - started:.0f}s"
    )
    assert lost == 0 and rows == distinct == STREAM, "every seq answered and recorded"
    # UNIQUE (node, seq) makes rows == distinct hold by construction; what the test shows is that the
    # duplicates really reached the recorder and had no second effect.
    assert received >= rows + min(results.duplicates(), 1), "raw duplicates reached the recorder, absorbed"


@pytest.mark.slow
def test_classifier_replica_kill9_mid_stream_loses_nothing(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path
) -> None:
    gallery, _probes = split_sample(sample_dir, tmp_path)
    keys = {("cam-1", seq) for seq in range(STREAM)}
    results = ResultCounter(broker.url, "test-results").start()
    replicas = [RunningClassifier(broker.url, gallery, tmp_path, instance=name).start() for name in ("r1", "r2")]
    recorder = start_recorder(broker.url, tmp_path / "results.sqlite", tmp_path / "recorder.log")

    def kill_and_restart_r1() -> None:
        assert replicas[0].process is not None
        replicas[0].process.send_signal(signal.SIGKILL)
        replicas[0].process.wait()
        replicas[0].start()  # a supervisor brings it back with the same --instance (its session)

    try:
        publisher = stream_with_fault(
            broker.url, tmp_path / "spool.sqlite", synthetic_stream("cam-1", STREAM), STREAM // 2, kill_and_restart_r1
        )
        assert publisher.wait_drained(120), f"spool still holds {publisher.spool.depth}"
        results.wait_for(keys, timeout=120)
        publisher.close()
        time.sleep(2.0)
    finally:
        assert [replica.stop() for replica in replicas] == [0, 0]
        recorder.terminate()
        assert recorder.wait(30) == 0
        received = recorder_received(broker.url)
        results.stop()
    assert results.missing(keys) == set()
    rows, distinct = recorded(tmp_path / "results.sqlite")
    assert (rows, distinct) == (STREAM, STREAM)
    assert received >= rows + min(results.duplicates(), 1), "raw duplicates reached the recorder, absorbed"
    print(
        f"replica kill -9: {STREAM} sent, 0 lost, {results.duplicates()} raw duplicate results,"
        f" recorder {received} deliveries -> {rows} rows"
    )


OUTAGE_SECONDS = 20.0


@pytest.mark.slow
def test_edge_spools_through_a_broker_outage_and_drains_in_order(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path
) -> None:
    """A real edge-agent replays the lfw folder; the broker stops for a while; then SIGTERM: exit 0, nothing lost."""
    watch = DurableCollector(broker.url, "facewire/embeddings/cam-1").start()
    env = {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state"), "FACEWIRE_EDGE__HEARTBEAT_SECONDS": "1"}
    args = ["run", "--node-id", "cam-1", "--source", str(sample_dir / "lfw"), "--max-fps", "10", "--broker", broker.url]
    edge = start_module("edge_agent", [*args, "-v"], env, tmp_path / "edge.log")
    try:
        time.sleep(8.0)
        broker.stop()
        time.sleep(OUTAGE_SECONDS)
        spooled = spool_depth_logged(tmp_path / "edge.log")
        broker.start()
        time.sleep(35.0)  # paho's reconnect back-off reaches 16-30 s during a long outage
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(60) == 0, (tmp_path / "edge.log").read_text()[-3000:]
        log = (tmp_path / "edge.log").read_text()
        published = int(re.findall(r"(\d+) published", log)[-1])
        seqs = watch.wait_for_seqs(published, timeout=30)
    finally:
        watch.stop()
        if edge.poll() is None:
            edge.kill()
    assert spooled > 0, "the agent kept detecting and spooling while the broker was down"
    assert sorted(set(seqs)) == list(range(published)), "every seq arrived"
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == sorted(first_seen), "drained in order"
    assert Spool(tmp_path / "state" / "cam-1.spool.sqlite", 10).depth == 0
    print(
        f"broker outage {OUTAGE_SECONDS:.0f}s: {published} published, {spooled} spooled at most, 0 lost, "
        f"{len(seqs) - published} raw duplicates"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_edge_agent_stops_cleanly_on_a_signal(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path, signum: signal.Signals
) -> None:
    """Mid-stream signal: the frame in hand is finished, the spool flushed, status 'offline', exit code 0."""
    watch = Collector(broker.url, ["facewire/embeddings/cam-1", "facewire/nodes/cam-1/status"]).start()
    env = {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state")}
    args = ["run", "--node-id", "cam-1", "--source", str(sample_dir / "lfw"), "--broker", broker.url]
    edge = start_module("edge_agent", args, env, tmp_path / "edge.log")
    try:
        assert watch.wait_for(lambda t: "embeddings" in t, 3, timeout=60), (tmp_path / "edge.log").read_text()
        edge.send_signal(signum)
        assert edge.wait(30) == 0, (tmp_path / "edge.log").read_text()
        time.sleep(0.5)
    finally:
        if edge.poll() is None:
            edge.kill()
        watch.stop()
    log = (tmp_path / "edge.log").read_text()
    published = int(re.findall(r"(\d+) published", log)[-1])
    seqs = [FaceEmbedding.from_msgpack(p).seq for t, p in watch.matching(lambda t: "embeddings" in t)]
    assert sorted(set(seqs)) == list(range(published)), "everything published before the signal reached the broker"
    assert b'"offline"' in watch.matching(lambda t: t.endswith("status"))[-1][1]
    assert Spool(tmp_path / "state" / "cam-1.spool.sqlite", 10).depth == 0


BACKLOG = 20_000


@pytest.mark.slow
def test_backlog_beyond_mosquittos_default_queue_is_kept_for_an_absent_classifier(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path
) -> None:
    """20k embeddings while the only classifier is away: mosquitto's default max_queued_messages (1000) would drop
    19k silently; broker/mosquitto.conf's bound keeps them, and the classifier answers them all on its return."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    keys = {("cam-1", seq) for seq in range(BACKLOG)}
    results = ResultCounter(broker.url, "test-results").start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="slow").start()
    assert classifier.stop() == 0  # away, but its session (and $share subscription) stays
    publisher = SpooledPublisher(broker.url, tmp_path / "spool.sqlite", "edge-synthetic")
    try:
        for payload in synthetic_stream("cam-1", BACKLOG):
            publisher.put("facewire/embeddings/cam-1", payload)
        assert publisher.wait_drained(120), "the broker accepted the whole backlog"
        started = time.monotonic()
        classifier.start()
        results.wait_for(keys, timeout=180)
        elapsed = time.monotonic() - started
    finally:
        publisher.close()
        assert classifier.stop() == 0
        results.stop()
    assert results.missing(keys) == set()
    assert "dropped" not in broker.log_path.read_text().lower()
    print(f"backlog: {BACKLOG} queued for an absent classifier, all answered {elapsed:.0f}s after its return")


def test_edge_agent_started_before_the_broker_spools_then_delivers(tmp_path: Path, sample_dir: Path) -> None:
    broker = LocalBroker(tmp_path / "broker").start()
    watch = DurableCollector(broker.url, "facewire/embeddings/cam-1").start()  # its session outlives the stop
    broker.stop()
    env = {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state"), "FACEWIRE_EDGE__HEARTBEAT_SECONDS": "1"}
    args = ["run", "--node-id", "cam-1", "--source", str(sample_dir / "lfw"), "--max-fps", "10", "--broker", broker.url]
    edge = start_module("edge_agent", [*args, "-v"], env, tmp_path / "edge.log")
    try:
        deadline = time.monotonic() + 60  # model loading takes longer on a loaded machine
        while spool_depth_logged(tmp_path / "edge.log") == 0 and edge.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert edge.poll() is None, "no broker is not a reason to exit"
        spooled = spool_depth_logged(tmp_path / "edge.log")
        broker.start()
        watch.wait_for_seqs(1, timeout=30)
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(60) == 0, (tmp_path / "edge.log").read_text()[-3000:]
        published = int(re.findall(r"(\d+) published", (tmp_path / "edge.log").read_text())[-1])
        seqs = watch.wait_for_seqs(published, timeout=30)
    finally:
        if edge.poll() is None:
            edge.kill()
        watch.stop()
        broker.stop()
    log = (tmp_path / "edge.log").read_text()
    assert "cannot reach broker" in log and spooled > 0
    assert sorted(set(seqs)) == list(range(published)), "what was spooled before the broker existed arrived too"


def unacknowledged_seqs(spool_file: Path) -> set[int]:
    """The seqs of the embeddings a spool still holds unacknowledged."""
    with sqlite3.connect(spool_file) as db:
        rows = db.execute("SELECT payload FROM spool WHERE acked IS NULL").fetchall()
    return {FaceEmbedding.from_msgpack(bytes(row[0])).seq for row in rows}


@pytest.mark.slow
def test_edge_agent_kill9_keeps_its_spool_and_sends_it_after_restart(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path
) -> None:
    """The broker is down, the agent spools, the agent is killed -9; restarted with the broker back, it sends them."""
    watch = DurableCollector(broker.url, "facewire/embeddings/cam-1").start()
    broker.stop()
    env = {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state")}
    args = ["run", "--node-id", "cam-1", "--source", str(sample_dir / "lfw"), "--max-fps", "10", "--broker", broker.url]
    edge = start_module("edge_agent", args, env, tmp_path / "edge.log")
    spool_file = tmp_path / "state" / "cam-1.spool.sqlite"
    deadline = time.monotonic() + 90  # model loading takes seconds on a loaded machine
    while time.monotonic() < deadline and not (spool_file.exists() and len(unacknowledged_seqs(spool_file)) >= 5):
        time.sleep(0.5)
    edge.send_signal(signal.SIGKILL)
    edge.wait(10)
    pending = unacknowledged_seqs(spool_file)
    broker.start()
    edge = start_module("edge_agent", args, env, tmp_path / "edge2.log")
    try:
        seqs = watch.wait_for_seqs(len(pending), timeout=60)
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(60) == 0
    finally:
        if edge.poll() is None:
            edge.kill()
        watch.stop()
    assert len(pending) > 0, "the killed agent had spooled embeddings"
    assert pending <= set(seqs), "every embedding spooled before the kill arrived after the restart"
    print(f"edge kill -9: {len(pending)} spooled embeddings survived and were delivered")
