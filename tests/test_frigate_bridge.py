"""The Frigate bridge against a live mosquitto running the shipped secure config (TLS, passwords, broker/acl),
a real classifier, a real ``facewire frigate`` process logged in as ``frigate``, Frigate's own MQTT client
logged in as ``frigate_nvr``, and a local HTTP server that implements exactly the Frigate endpoints the
bridge uses. Every camera's faces are published as the one node ``frigate``: the account's own.

Payload shapes from Frigate's documentation (0.13 / 0.14):
- ``frigate/events``: https://docs.frigate.video/integrations/mqtt/#frigateevents
  ``{"type": "new"|"update"|"end", "before": {...}, "after": {"id", "camera", "label", "sub_label",
  "false_positive", "has_snapshot", ...}}``
- ``GET /api/events/<id>/snapshot.jpg?crop=1&quality=95`` and ``GET /api/events/<id>/thumbnail.jpg``:
  https://docs.frigate.video/integrations/api/ (JPEG bodies)
- ``POST /api/events/<id>/sub_label`` with JSON ``{"subLabel": str, "subLabelScore": float}``,
  answered ``{"success": true, "message": ...}`` (the endpoint Double Take used).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from facewire.mqtt import MqttConnection
from harness.processes import SAMPLE, Collector, RunningClassifier, start_module
from tests.broker_support import account_env, start_secure_broker
from tests.gallery_support import KNOWN, make_gallery, photos


class FakeFrigate(ThreadingHTTPServer):
    """Frigate's snapshot, thumbnail and sub_label endpoints over a map of event id -> JPEG bytes."""

    def __init__(self, images: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), FrigateHandler)
        self.images = images
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.labels: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FrigateHandler(BaseHTTPRequestHandler):
    server: FakeFrigate

    def log_message(self, *_args: object) -> None:
        pass

    def _event(self) -> tuple[str, str]:
        parts = self.path.split("?")[0].split("/")  # /api/events/<id>/<tail>
        return (parts[3], parts[4]) if len(parts) == 5 and parts[1:3] == ["api", "events"] else ("", "")

    def _answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        event_id, tail = self._event()
        if tail in ("snapshot.jpg", "thumbnail.jpg") and event_id in self.server.images:
            self._answer(200, self.server.images[event_id], "image/jpeg")
        else:
            self._answer(404, b'{"success": false, "message": "Event not found"}', "application/json")

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        event_id, tail = self._event()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if tail != "sub_label" or event_id not in self.server.images or not isinstance(body.get("subLabel"), str):
            self._answer(404, b'{"success": false, "message": "Event not found"}', "application/json")
            return
        self.server.labels[event_id] = body
        message = {"success": True, "message": f"Event {event_id} sub label set to {body['subLabel']}"}
        self._answer(200, json.dumps(message).encode(), "application/json")


def frigate_event(kind: str, event_id: str, camera: str, label: str = "person", snapshot: bool = True) -> bytes:
    """A ``frigate/events`` message as the documentation shows it (fields the bridge ignores included)."""
    after = {
        "id": event_id,
        "camera": camera,
        "frame_time": time.time(),
        "snapshot": {"frame_time": time.time(), "box": [415, 489, 528, 700], "area": 12728,
                     "region": [260, 446, 660, 846], "score": 0.77546, "attributes": []},
        "label": label,
        "sub_label": None,
        "top_score": 0.958984375,
        "false_positive": False,
        "start_time": time.time() - 2,
        "end_time": time.time() if kind == "end" else None,
        "score": 0.7890625,
        "box": [424, 500, 536, 712],
        "area": 23744,
        "ratio": 2.113207,
        "region": [264, 450, 667, 853],
        "current_zones": ["driveway"],
        "entered_zones": ["yard", "driveway"],
        "thumbnail": None,
        "has_snapshot": snapshot,
        "has_clip": False,
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 2,
        "attributes": {},
    }  # fmt: skip
    return json.dumps({"type": kind, "before": after, "after": after}).encode()


@pytest.fixture
def frigate() -> Iterator[FakeFrigate]:
    unknown = sorted((SAMPLE / "lfw" / "unknown").glob("*/*.jpg"))[0]
    images = {
        "1700000001.1-tony": photos(KNOWN / "Tony_Blair")[5].read_bytes(),
        "1700000002.2-stranger": unknown.read_bytes(),
        "1700000003.3-colin": photos(KNOWN / "Colin_Powell")[5].read_bytes(),
        "1700000004.4-late": photos(KNOWN / "Tony_Blair")[4].read_bytes(),
        "1700000005.5-car": photos(KNOWN / "Tony_Blair")[4].read_bytes(),
    }
    server = FakeFrigate(images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_person_events_are_named_once_and_labelled_in_frigate(tmp_path: Path, frigate: FakeFrigate) -> None:
    secure = start_secure_broker(tmp_path, ["admin", "classifier", "frigate", "frigate_nvr"])
    admin, service = secure.settings("admin"), secure.settings("classifier")
    gallery = make_gallery(tmp_path / "gallery", {p: photos(KNOWN / p)[:4] for p in ("Colin_Powell", "Tony_Blair")})
    classifier = RunningClassifier(service.url, gallery, tmp_path, env=account_env(service), watch=admin).start()
    results = Collector(admin.url, ["facewire/results/+"], settings=admin).start()
    log = tmp_path / "frigate.log"
    args = ["frigate", "--frigate-url", frigate.url, "--per-minute", "3", "-v"]
    bridge = start_module("facewire_console", args, account_env(secure.settings("frigate")), log)
    frigate_mqtt = MqttConnection(secure.settings("frigate_nvr"), "test-frigate")  # Frigate's own MQTT client
    frigate_mqtt.connect()
    try:
        wait_until(lambda: "frigate bridge:" in log.read_text(), 60, "bridge not up")
        send = lambda payload: frigate_mqtt.publish("frigate/events", payload).wait_for_publish(5)  # noqa: E731
        send(frigate_event("new", "1700000005.5-car", "front_door", label="car"))  # not a person: ignored
        send(frigate_event("new", "1700000001.1-tony", "front_door"))
        send(frigate_event("update", "1700000001.1-tony", "front_door"))  # the same event again: handled once
        send(frigate_event("end", "1700000001.1-tony", "front_door"))
        send(frigate_event("new", "1700000002.2-stranger", "garden", snapshot=False))
        wait_until(lambda: "1700000001.1-tony" in frigate.labels, 60, f"no sub_label:\n{log.read_text()}")
        assert frigate.labels["1700000001.1-tony"]["subLabel"] == "Tony_Blair"
        assert 0 < frigate.labels["1700000001.1-tony"]["subLabelScore"] <= 1

        send(frigate_event("new", "1700000003.3-colin", "front_door"))
        send(frigate_event("new", "1700000004.4-late", "front_door"))  # the 4th person event this minute: dropped
        wait_until(lambda: "1700000003.3-colin" in frigate.labels, 60, f"no sub_label:\n{log.read_text()}")
        assert frigate.labels["1700000003.3-colin"]["subLabel"] == "Colin_Powell"
        wait_until(lambda: "camera=garden" in log.read_text(), 30, f"no garden event:\n{log.read_text()}")
        time.sleep(1.0)
        fetched = [path.split("?")[0] for method, path in frigate.requests if method == "GET"]
        assert sorted(fetched) == [
            "/api/events/1700000001.1-tony/snapshot.jpg",
            "/api/events/1700000002.2-stranger/thumbnail.jpg",  # Frigate kept no snapshot of it
            "/api/events/1700000003.3-colin/snapshot.jpg",
        ]
        assert ("GET", "/api/events/1700000001.1-tony/snapshot.jpg?crop=1&quality=95") in frigate.requests
        assert set(frigate.labels) == {"1700000001.1-tony", "1700000003.3-colin"}  # the stranger is not labelled
        # every camera's faces as the bridge account's own node: one result per face of the three events
        assert {topic for topic, _ in results.messages} == {"facewire/results/frigate"}
        assert len(results.messages) >= 3
        assert "camera=front_door" in log.read_text()  # the camera of each event is in the bridge's log
    finally:
        frigate_mqtt.close()
        bridge.terminate()
        assert bridge.wait(30) == 0
        results.stop()
        classifier.stop()
        secure.stop()
    assert "'rate-limited': 1" in log.read_text() and "'duplicate': 2" in log.read_text()
