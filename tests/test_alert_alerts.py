"""Alert replicas against a real mosquitto and a real HTTP webhook: one alert per incident, none for known faces."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from alert_service.sqlite_alerts import SqliteAlertStore
from facewire.erasure import erasure_marker
from facewire.schema import Alert, FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import Collector, run_module, start_module
from tests.alert_support import T0, face, log_tail, publish_all, results_payloads, wait_for_online, wait_until

CONFIG = """
[alerts]
unknown_count = 3
unknown_window = 10.0
cooldown = 30.0
watchlist = ["Colin_Powell"]
webhook_timeout = 1.0
webhook_retries = 1
"""


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP server on a free port that keeps the bodies POSTed to it."""
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", Hook.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_webhook() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung webhook receiver)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def start_alerts(broker: LocalBroker, work: Path, instance: str, hook: str) -> subprocess.Popen[bytes]:
    config = work / "facewire.toml"
    config.write_text(CONFIG)
    args = ["run", "alerts", "--broker", broker.url, "--config", str(config), "--database", str(work / "a.sqlite")]
    process = start_module(
        "alert_service", [*args, "--instance", instance, "--webhook", hook], {}, work / f"{instance}.log"
    )
    wait_for_online(broker.url, "alerts", instance)
    return process


def incident_stream() -> list[FaceResult]:
    """Two incidents of unknowns on cam1 (a cooldown apart), known faces, too few unknowns on cam3, a watched person."""
    first = [face("cam1", seq) for seq in (0, 2, 4, 6)]
    known = [face("cam2", seq, "Tony_Blair", 0.72) for seq in range(1, 10)]
    second = [face("cam1", seq) for seq in (100, 101, 102)]
    few = [face("cam3", seq) for seq in (5, 40)]
    watched = [face("cam2", 50, "Colin_Powell", 0.61)]
    return first + known + first + second + few + watched + second  # cam1 results delivered twice


def test_replicas_raise_one_alert_per_incident_and_call_the_webhook(
    broker: LocalBroker, tmp_path: Path, webhook: tuple[str, list[bytes]]
) -> None:
    url, posted = webhook
    collector = Collector(broker.url, [Topics().alerts("+")]).start()
    replicas = [start_alerts(broker, tmp_path, name, url) for name in ("alerts-a", "alerts-b")]
    try:
        publish_all(broker.url, results_payloads(incident_stream()))
        arrived = collector.wait_for(lambda _t: True, 3, 20)
        time.sleep(3.0)  # a duplicate alert would arrive by now
        alerts = [Alert.from_json(payload) for _topic, payload in collector.matching(lambda _t: True)]
        assert wait_until(lambda: len(posted) >= 3, 10)
        forgotten = GalleryEvent("forgotten", "f1", "c1", "forget", details={"person": "Colin_Powell"}).to_json()
        publish_all(broker.url, [(Topics().gallery_events(), forgotten)])
        store = SqliteAlertStore(tmp_path / "a.sqlite")
        marker = erasure_marker("Colin_Powell")
        assert wait_until(lambda: any(s.alert.subject == marker for s in store.alerts(10)), 15)
    finally:
        for process in replicas:
            process.terminate()
        for process in replicas:
            process.wait(20)
        collector.stop()
    logs = log_tail(tmp_path / "alerts-a.log") + log_tail(tmp_path / "alerts-b.log")
    assert len(arrived) == 3 and len(alerts) == 3, logs
    by_rule = sorted((a.rule, a.node, min(e.ts for e in a.evidence)) for a in alerts)
    assert by_rule == [("unknown", "cam1", T0), ("unknown", "cam1", T0 + 100), ("watchlist", "cam2", T0 + 50)]
    for alert in alerts:
        assert alert.rule != "unknown" or (len(alert.evidence) >= 3 and {e.name for e in alert.evidence} == {"unknown"})
    assert sorted(json.loads(body)["id"] for body in posted) == sorted(a.id for a in alerts)
    assert all(process.returncode == 0 for process in replicas), logs
    database = ["--database", str(tmp_path / "a.sqlite")]
    listed = run_module("facewire_console", ["alerts", *database, "--json"], {})
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3, listed.stderr
    watch_id = next(a.id for a in alerts if a.rule == "watchlist").replace("Colin_Powell", marker)
    acked = run_module("facewire_console", ["alerts", *database, "ack", watch_id, "--by", "guard"], {})
    assert acked.returncode == 0 and "acknowledged" in acked.stdout, acked.stderr
    remaining = run_module("facewire_console", ["alerts", *database, "--json"], {})
    assert sorted(json.loads(line)["rule"] for line in remaining.stdout.splitlines()) == ["unknown", "unknown"]
    stored = store.alerts(10)
    assert all(s.published and s.webhook.startswith("sent") for s in stored)
    assert all("Colin_Powell" not in s.alert.to_json().decode() for s in stored)


def test_a_dead_webhook_does_not_stall_alerts(broker: LocalBroker, tmp_path: Path, dead_webhook: str) -> None:
    collector = Collector(broker.url, [Topics().alerts("+")]).start()
    service = start_alerts(broker, tmp_path, "alerts-dead-hook", dead_webhook)
    try:
        started = time.monotonic()
        publish_all(broker.url, results_payloads([face(f"cam{n}", seq) for n in (1, 2, 3) for seq in (0, 1, 2)]))
        arrived = collector.wait_for(lambda _t: True, 3, 10)
        elapsed = time.monotonic() - started
        store = SqliteAlertStore(tmp_path / "a.sqlite")
        failed = wait_until(lambda: any(s.webhook.startswith("failed") for s in store.alerts(10)), 15)
    finally:
        service.terminate()
        service.wait(20)
        collector.stop()
    assert len(arrived) == 3, log_tail(tmp_path / "alerts-dead-hook.log")
    # each webhook attempt hangs for its 1 s timeout (2 attempts + back-off per alert): 9 s for the three in a row
    assert elapsed < 3.0, f"alerts took {elapsed:.1f}s behind a dead webhook"
    assert failed, [s.webhook for s in store.alerts(10)]
