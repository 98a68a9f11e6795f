"""What the fault tests and the chaos benchmark share: the edge's real spool and forwarder, a recorder process."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from edge_agent.forwarder import Forwarder
from edge_agent.spool import Spool
from facewire.config import EdgeSettings, MqttSettings
from facewire.mqtt import MqttConnection
from harness.processes import Collector, start_module, status_online

RESEND_SECONDS = EdgeSettings().resend_seconds  # the edge agent's default


class SpooledPublisher:
    """The edge's real spool + forwarder, fed with synthetic embeddings instead of a camera."""

    def __init__(self, url: str, spool_path: Path, client_id: str) -> None:
        self.connection = MqttConnection(MqttSettings(url=url), client_id)
        self.spool = Spool(spool_path, max_messages=1_000_000, keep_acked=RESEND_SECONDS)
        self.forwarder = Forwarder(self.spool, self.connection, resend_seconds=RESEND_SECONDS)
        self.connection.on_connection_change = self.forwarder.connection_changed
        self.connection.connect()
        self.forwarder.start()

    def put(self, topic: str, payload: bytes) -> None:
        self.forwarder.put(topic, payload)

    def wait_drained(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.spool.depth and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.spool.depth == 0

    def close(self) -> None:
        self.forwarder.close()
        self.connection.close()
        self.spool.close()


def start_recorder(url: str, database: Path, log: Path, instance: str = "rec") -> subprocess.Popen[bytes]:
    """A real ``alert-service run recorder`` process with a stable instance, ready when this returns."""
    status = f"facewire/services/recorder/{instance}/status"
    watcher = Collector(url, [status]).start()
    args = ["run", "recorder", "--instance", instance, "--database", str(database), "--broker", url]
    process = start_module("alert_service", args, {}, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(status_online(p) for _t, p in watcher.matching(lambda t: t == status)):
                return process
            if process.poll() is not None:
                raise RuntimeError(f"recorder exited early:\n{log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"recorder not ready:\n{log.read_text()}")
    finally:
        watcher.stop()


def recorded(database: Path) -> tuple[int, int]:
    """(rows, distinct (node, seq)) in the recorder's results table."""
    with sqlite3.connect(database) as db:
        rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT node || '/' || seq) FROM results").fetchone()
    return int(rows), int(distinct)
