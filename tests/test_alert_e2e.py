"""`alert-service run all` beside a real classifier and edge agent on the sample clip."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from alert_service.sqlite_alerts import SqliteAlertStore
from alert_service.sqlite_log import SqliteResultLog
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import SAMPLE, Collector, run_module, start_module
from tests.alert_support import log_tail, wait_for_online, wait_until


def online_recorders(collector: Collector) -> dict[str, dict[str, object]]:
    """Newest status of each recorder instance, by instance id."""
    statuses: dict[str, dict[str, object]] = {}
    for _topic, payload in collector.matching(lambda t: "/services/recorder/" in t):
        status = json.loads(payload)
        statuses[str(status["instance"])] = status
    return {name: status for name, status in statuses.items() if status["state"] == "online"}


@pytest.mark.slow
def test_run_all_beside_the_classifier_keeps_log_alerts_stats_and_restarts_a_dead_subscriber(
    broker: LocalBroker, tmp_path: Path
) -> None:
    env = {
        "FACEWIRE_MQTT__URL": broker.url,
        "FACEWIRE_RECORDER__DATABASE": str(tmp_path / "results.sqlite"),
        "FACEWIRE_ALERTS__DATABASE": str(tmp_path / "results.sqlite"),
        "FACEWIRE_CLASSIFIER__GALLERY": str(SAMPLE / "enroll"),
        "FACEWIRE_STATS__PUBLISH_INTERVAL": "1",
        "FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state"),
    }
    topics = Topics()
    collector = Collector(broker.url, [topics.service_status("+", "+"), topics.stats_thresholds()]).start()
    classifier = start_module("classifier_service", ["run", "--instance", "c1"], env, tmp_path / "classifier.log")
    subscribers = start_module("alert_service", ["run", "all"], env, tmp_path / "alert-service.log")
    try:
        wait_for_online(broker.url, "classifier", "c1", timeout=180)
        assert wait_until(lambda: len(online_recorders(collector)) == 1, 60), log_tail(tmp_path / "alert-service.log")
        # the supervisor restarts a subscriber that dies
        (first,) = online_recorders(collector)
        os.kill(int(first.rsplit("-", 1)[1]), signal.SIGKILL)
        restarted = wait_until(lambda: bool(set(online_recorders(collector)) - {first}), 30)
        assert restarted, log_tail(tmp_path / "alert-service.log")
        edge_args = ["run", "--node-id", "stage-left", "--source", str(SAMPLE / "short_hamilton_clip.mp4"), "--once"]
        edge = run_module("edge_agent", edge_args, env, timeout=300)
        assert edge.returncode == 0, edge.stderr[-2000:]
        published = int(edge.stderr.split(" published")[0].rsplit(",", 1)[1])
        log = SqliteResultLog(tmp_path / "results.sqlite")
        assert wait_until(lambda: log.count() == published, 30), (log.count(), published)
        assert log.last_seen("Lin_Manuel_Miranda") is not None
        alerts = SqliteAlertStore(tmp_path / "results.sqlite").alerts(10)
        assert [a.alert.rule for a in alerts] == ["unknown"] and alerts[0].published
        stats = collector.matching(lambda t: t == topics.stats_thresholds())
        assert stats and json.loads(stats[-1][1])["counts"]["live"] > 0
    finally:
        for process in (subscribers, classifier):
            process.terminate()
            process.wait(30)
        collector.stop()
    assert subscribers.returncode == 0, log_tail(tmp_path / "alert-service.log")
