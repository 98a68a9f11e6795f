"""Alerts through Apprise to local HTTP endpoints: the real alert service, the real Apprise library, a real
HTTP server standing in for ntfy and for a JSON receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from alert_service.webhook import AlertSender
from facewire.errors import ConfigError
from facewire.schema import Alert
from facewire_console.broker import LocalBroker
from harness.processes import start_module
from tests.alert_support import T0, face, log_tail, publish_all, results_payloads, wait_for_online, wait_until

pytest.importorskip("apprise", reason="the `notify` extra (apprise) is not installed")
from alert_service.apprise_channel import AppriseChannel


class Receiver(BaseHTTPRequestHandler):
    """Keeps (path, headers, body) of every POST; answers 200 with a JSON body as ntfy does."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append((self.path, dict(self.headers.items()), body))
        answer = b'{"id":"x","event":"message"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[tuple[str, dict[str, str], bytes]]]]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], Receiver.received
    server.shutdown()
    server.server_close()


def test_an_alert_reaches_ntfy_and_a_json_endpoint_through_apprise(
    broker: LocalBroker, tmp_path: Path, receiver: tuple[int, list[tuple[str, dict[str, str], bytes]]]
) -> None:
    port, received = receiver
    urls = [f"ntfy://127.0.0.1:{port}/doorbell", f"json://127.0.0.1:{port}/notify"]
    config = tmp_path / "facewire.toml"
    config.write_text(f"[alerts]\nunknown_count = 3\nunknown_window = 10.0\napprise_urls = {json.dumps(urls)}\n")
    args = ["run", "alerts", "--broker", broker.url, "--config", str(config), "--database", str(tmp_path / "a.sqlite")]
    service = start_module("alert_service", [*args, "--instance", "notify"], {}, tmp_path / "alerts.log")
    try:
        wait_for_online(broker.url, "alerts", "notify")
        publish_all(broker.url, results_payloads([face("frontdoor", seq) for seq in (0, 1, 2)]))
        assert wait_until(lambda: len(received) >= 2, 20), log_tail(tmp_path / "alerts.log")
    finally:
        service.terminate()
        service.wait(20)
    by_path = {path: (headers, body) for path, headers, body in received}
    ntfy_headers, ntfy_body = next(value for path, value in by_path.items() if path != "/notify")
    ntfy = json.loads(ntfy_body) if ntfy_body.startswith(b"{") else {"message": ntfy_body.decode()}
    assert ntfy.get("topic", "doorbell") == "doorbell"
    assert "frontdoor" in json.dumps(ntfy) + json.dumps(ntfy_headers)
    _headers, json_body = by_path["/notify"]
    message = json.loads(json_body)
    assert message["title"] == "facewire: Unknown person at frontdoor" and "frontdoor" in message["message"]
    assert message["type"] == "warning"


def test_a_refused_notification_is_retried_and_reported_failed() -> None:
    statuses: list[tuple[str, str]] = []
    channel = AppriseChannel(["json://127.0.0.1:9/closed"])  # nothing listens on port 9
    sender = AlertSender([channel], 1.0, 1, 10, lambda key, status: statuses.append((key, status)), backoff=0.1)
    sender.start()
    assert sender.submit(Alert("k1", "unknown", "cam", "unknown", "3 unknown faces", T0, T0))
    assert wait_until(lambda: bool(statuses), 30)
    sender.stop()
    assert statuses[0][0] == "k1" and statuses[0][1].startswith("failed after 2 attempts"), statuses
    assert "not delivered by JSON" in statuses[0][1] and sender.failed == 1


def test_an_apprise_url_it_cannot_read_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="Apprise does not understand"):
        AppriseChannel(["nosuchservice://secret-token@host/"])
