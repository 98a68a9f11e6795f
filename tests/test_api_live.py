"""The REST API against live processes: mosquitto, two classifier replicas and ``facewire api serve``."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import requests

from alert_service.store import LogRow
from alert_service.store_factory import open_alert_store, open_result_log
from facewire.config import MqttSettings
from facewire.faces import FaceAnalyzer
from facewire.mqtt import MqttConnection
from facewire.schema import Alert, Candidate, Evidence
from facewire.schema.stats import ThresholdReport
from facewire.schema.status import NodeStatus
from tests.api_support import Stack, api_stack, error_code, replica_people  # noqa: F401  (api_stack: the fixture)
from tests.gallery_support import KNOWN, largest_embedding, photos
from tests.web_support import RunningWeb


def recognize(stack: Stack, path: Path, key: str | None = None) -> dict[str, object]:
    with path.open("rb") as photo:
        answer = stack.api.call("POST", "/recognize", key or stack.keys["recognize"], files={"image": photo})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def names(result: dict[str, object]) -> list[str]:
    return [str(face["name"]) for face in result["faces"]]  # type: ignore[attr-defined]


def test_recognise_real_photos_largest_first_and_a_photo_without_face(
    stack: Stack, tmp_path: Path, shared_data: Path
) -> None:
    images = shared_data / "images"
    tony = recognize(stack, photos(KNOWN / "Tony_Blair")[5])
    assert names(tony) == ["Tony_Blair"] and tony["faces"][0]["known"] is True  # type: ignore[index]
    assert tony["model"] and tony["gallery_version"]
    x, y, w, h = tony["faces"][0]["bbox"]  # type: ignore[index]
    assert 30 < x + w / 2 < 220 and 30 < y + h / 2 < 220 and w > 40, tony  # LFW: the face in the middle of 250x250

    two = recognize(stack, images / "two_people.jpg")
    assert names(two) == ["unknown", "unknown"]  # nobody of them enrolled yet
    widths = [face["bbox"][2] for face in two["faces"]]  # type: ignore[attr-defined]
    assert widths == sorted(widths, reverse=True)

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1)))
    assert recognize(stack, blank)["faces"] == []


def test_recognise_an_embedding(stack: Stack, analyzer: FaceAnalyzer) -> None:
    vector = largest_embedding(analyzer, photos(KNOWN / "Colin_Powell")[5])
    model = recognize(stack, photos(KNOWN / "Colin_Powell")[0])["model"]
    body = {"embedding": [float(v) for v in vector], "model": model}
    answer = stack.api.call("POST", "/recognize", stack.keys["recognize"], json=body)
    assert answer.status_code == 200, answer.text
    assert names(answer.json()) == ["Colin_Powell"] and answer.json()["gallery_version"]
    wrong = stack.api.call("POST", "/recognize", stack.keys["recognize"], json={**body, "model": "other-model"})
    assert wrong.status_code == 422 and error_code(wrong) == "invalid"


def test_enrol_recognise_rename_delete_across_two_replicas(stack: Stack, tmp_path: Path, shared_data: Path) -> None:
    images = shared_data / "images"
    admin = stack.keys["admin"]
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1)))
    files = [
        ("image", ("wall.png", wall.read_bytes())),
        ("image", ("obama.jpg", (images / "obama.jpg").read_bytes())),
    ]
    mixed = stack.api.call("POST", "/subjects/Barack Obama/photos", admin, files=files)
    assert mixed.status_code == 200 and mixed.json()["accepted"] == 1, mixed.text
    rejected, accepted = mixed.json()["photos"]
    assert rejected["filename"] == "wall.png" and not rejected["accepted"] and rejected["reason"], rejected
    assert accepted["filename"] == "obama.jpg" and accepted["accepted"]
    with (images / "biden.jpg").open("rb") as photo:
        biden = stack.api.call("POST", "/subjects/Joe Biden/photos", admin, files=[("image", photo)])
    assert biden.status_code == 200 and biden.json()["accepted"] == 1, biden.text
    assert {p["Barack Obama"] for p in replica_people(stack.broker.url).values()} == {1}
    assert len(replica_people(stack.broker.url)) == 2

    assert names(recognize(stack, images / "two_people.jpg")) in (
        ["Barack Obama", "Joe Biden"],
        ["Joe Biden", "Barack Obama"],
    )
    listed = {s["name"]: s for s in stack.api.call("GET", "/subjects", stack.keys["read"]).json()["subjects"]}
    counts = replica_people(stack.broker.url)["a"]
    assert {name: subject["photos"] for name, subject in listed.items()} == counts

    renamed = stack.api.call("PATCH", "/subjects/Barack Obama", admin, json={"name": "Obama"})
    assert renamed.status_code == 200 and renamed.json()["replicas"] == 2, renamed.text
    assert all("Obama" in p and "Barack Obama" not in p for p in replica_people(stack.broker.url).values())
    assert names(recognize(stack, images / "obama.jpg")) == ["Obama"]
    taken = stack.api.call("PATCH", "/subjects/Obama", admin, json={"name": "Joe Biden"})
    assert taken.status_code == 409 and error_code(taken) == "conflict"
    missing = stack.api.call("PATCH", "/subjects/Nobody Here", admin, json={"name": "Someone"})
    assert missing.status_code == 404 and error_code(missing) == "not-found"

    for person in ("Obama", "Joe Biden"):
        gone = stack.api.call("DELETE", f"/subjects/{person}", admin)
        assert gone.status_code == 200 and gone.json()["replicas"] == 2, gone.text
    assert all("Obama" not in p and "Joe Biden" not in p for p in replica_people(stack.broker.url).values())
    assert names(recognize(stack, images / "obama.jpg")) == ["unknown"]


def test_scopes_missing_and_revoked_keys(stack: Stack) -> None:
    api, keys = stack.api, stack.keys
    missing = api.call("GET", "/subjects", None)
    assert missing.status_code == 401 and error_code(missing) == "missing-key"
    wrong = api.call("GET", "/subjects", "fwk_not-a-key")
    assert wrong.status_code == 401 and error_code(wrong) == "bad-key"
    for key, method, path in [
        (keys["recognize"], "GET", "/subjects"),
        (keys["recognize"], "GET", "/log"),
        (keys["read"], "DELETE", "/subjects/Tony_Blair"),
        (keys["read"], "PATCH", "/subjects/Tony_Blair"),
        (keys["read"], "POST", "/subjects/Tony_Blair/photos"),
    ]:
        refused = api.call(method, path, key)
        assert refused.status_code == 403 and error_code(refused) == "wrong-scope", (method, path)
    assert api.call("GET", "/nodes", keys["admin"]).status_code == 200
    assert "Tony_Blair" in {p for people in replica_people(stack.broker.url).values() for p in people}

    temporary = api.add_key("short-lived", "read")
    assert api.call("GET", "/nodes", temporary).status_code == 200
    assert api.cli("revoke", "short-lived").returncode == 0
    revoked = api.call("GET", "/nodes", temporary)
    assert revoked.status_code == 401 and error_code(revoked) == "bad-key"
    assert api.cli("revoke", "short-lived").returncode != 0  # nothing left to revoke
    stored = (api.workdir / "web-data" / "api-keys.json").read_text()
    assert temporary not in stored and keys["admin"] not in stored  # only hashes are kept


def test_rate_limit_per_key(stack: Stack) -> None:
    slow = stack.api.add_key("slow", "read", per_minute=3)
    codes = [stack.api.call("GET", "/nodes", slow).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429], codes
    limited = stack.api.call("GET", "/nodes", slow)
    assert error_code(limited) == "rate-limited" and int(limited.headers["Retry-After"]) >= 1
    assert stack.api.call("GET", "/nodes", stack.keys["read"]).status_code == 200  # other keys unaffected


def test_oversize_and_unreadable_images_store_nothing(stack: Stack, tmp_path: Path) -> None:
    admin, before = stack.keys["admin"], replica_people(stack.broker.url)
    good = photos(KNOWN / "Serena_Williams")[0].read_bytes()
    huge = good + b"\0" * (10 * 1024 * 1024)  # the default web.max_photo_bytes is 10 MiB
    for path, key in (("/recognize", stack.keys["recognize"]), ("/subjects/Joe Biden/photos", admin)):
        oversize = stack.api.call("POST", path, key, files={"image": ("big.jpg", huge)})
        assert oversize.status_code == 413 and error_code(oversize) == "too-large", oversize.text
        garbage = stack.api.call("POST", path, key, files={"image": ("bad.jpg", b"GIF89a not really")})
        assert garbage.status_code == 422 and error_code(garbage) == "unreadable-image", garbage.text
        assert "not a readable image" in garbage.json()["error"]["message"]
    mixed = [("image", ("ok.jpg", good)), ("image", ("bad.jpg", b"\xff\xd8 truncated"))]
    refused = stack.api.call("POST", "/subjects/Joe Biden/photos", admin, files=mixed)
    assert refused.status_code == 422 and "bad.jpg" in refused.json()["error"]["message"]
    assert replica_people(stack.broker.url) == before  # nothing enrolled anywhere
    text = stack.api.call("POST", "/recognize", stack.keys["recognize"], data=b"hello")
    assert text.status_code == 415 and error_code(text) == "unsupported-media-type"


def _row(node: str, seq: int, ts: float, name: str) -> LogRow:
    known = name != "unknown"
    return LogRow(node, seq, seq, seq, ts, ts, name, known, 0.8, 0.45, "gv1", "sface", (Candidate(name, 0.8),))


def test_log_paging_nodes_alerts_and_thresholds(stack: Stack) -> None:
    api, key, now = stack.api, stack.keys["read"], time.time()
    log = open_result_log(api.workdir / "results.sqlite")
    rows = [
        _row("door" if i % 2 else "hall", i, now - 100 + i // 2, "Tony_Blair" if i % 3 else "unknown")
        for i in range(30)
    ]
    log.insert(rows)
    log.close()
    seen, cursor = [], None
    while True:
        page = api.call("GET", "/log", key, params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        seen += [(r["node"], r["seq"]) for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted((r.node, r.seq) for r in rows) and len(seen) == len(set(seen))
    subjects = {s["name"]: s for s in api.call("GET", "/subjects", key).json()["subjects"]}
    latest = max((r for r in rows if r.name == "Tony_Blair"), key=lambda r: r.ts)
    last = subjects["Tony_Blair"]["last_seen"]
    assert last["ts"] == latest.ts and last["node"] in {r.node for r in rows if r.ts == latest.ts}
    assert subjects["Colin_Powell"]["last_seen"] is None
    door = api.call("GET", "/log", key, params={"node": "door", "person": "Tony_Blair", "since": str(now - 90)}).json()
    expected = [r for r in rows if r.node == "door" and r.name == "Tony_Blair" and r.ts >= now - 90]
    assert {r["seq"] for r in door["items"]} == {r.seq for r in expected} and door["next_cursor"] is None
    bad = api.call("GET", "/log", key, params={"since": "yesterday-ish"})
    assert bad.status_code == 422 and error_code(bad) == "invalid"
    for params in ({"persn": "Tony_Blair"}, {"person": ""}, {"cursor": "not-a-cursor"}):
        typo = api.call("GET", "/log", key, params=params)  # a filter that would silently match everything
        assert typo.status_code == 422 and error_code(typo) == "invalid", params

    alerts = open_alert_store(api.workdir / "alerts.sqlite")
    evidence = (Evidence("door", 3, 3, "Tony_Blair", 0.8, now),)
    alerts.open_incident(Alert("inc-1", "watchlist", "door", "Tony_Blair", "Tony_Blair at door", now, now, evidence))
    alerts.close()
    listed = api.call("GET", "/alerts", key).json()["alerts"]
    assert [a["id"] for a in listed] == ["inc-1"] and listed[0]["acked_at"] is None
    acked = api.call("POST", "/alerts/inc-1/ack", key)
    assert acked.status_code == 200 and acked.json() == {"id": "inc-1", "acknowledged": True}
    assert api.call("GET", "/alerts", key).json()["alerts"] == []
    assert api.call("GET", "/alerts", key, params={"all": "true"}).json()["alerts"][0]["acked_by"] == "api:k-read"
    assert api.call("POST", "/alerts/inc-1/ack", key).status_code == 404

    none_yet = api.call("GET", "/stats/thresholds", key)
    assert none_yet.status_code == 404 and error_code(none_yet) == "not-found"
    publisher = MqttConnection(MqttSettings(url=stack.broker.url), "test-retained")
    publisher.connect()
    status = NodeStatus("door", "online", now, model="sface", fps=5.0, faces_per_s=1.0, frames=10, faces=2)
    publisher.publish("facewire/nodes/door/status", status.to_json(), retain=True).wait_for_publish(5)
    report = ThresholdReport(now, 0.01, "gv1", "sface", {"genuine": 0, "impostor": 0}, None, None, ())
    publisher.publish("facewire/stats/thresholds", report.to_json(), retain=True).wait_for_publish(5)
    publisher.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not api.call("GET", "/nodes", key).json()["nodes"]:
        time.sleep(0.2)
    nodes = api.call("GET", "/nodes", key).json()["nodes"]
    assert [(n["node"], n["state"], n["model"]) for n in nodes] == [("door", "online", "sface")]
    stats = api.call("GET", "/stats/thresholds", key)
    assert stats.status_code == 200 and stats.json()["gallery_version"] == "gv1"


def test_the_dashboard_serves_the_same_api(stack: Stack, tmp_path: Path) -> None:
    env = {"FACEWIRE_MQTT__URL": stack.broker.url, "FACEWIRE_WEB__DATA_DIR": str(stack.api.workdir / "web-data")}
    web = RunningWeb(tmp_path, env).start()  # the same key file as `facewire api serve`
    try:
        missing = requests.get(web.url + "/api/v1/subjects", timeout=10)
        assert missing.status_code == 401 and error_code(missing) == "missing-key"
        headers = {"X-API-Key": stack.keys["read"]}
        deadline = time.monotonic() + 20
        while (answer := requests.get(web.url + "/api/v1/subjects", headers=headers, timeout=30)).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.3)
        assert "Tony_Blair" in {s["name"] for s in answer.json()["subjects"]}
        assert requests.get(web.url + "/api/v1/openapi.json", timeout=10).json()["openapi"] == "3.1.0"
    finally:
        assert web.stop() == 0
