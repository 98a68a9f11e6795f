"""Renaming a person (issue 12): strict parsing, both store engines, a real classifier over MQTT, the dashboard."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from classifier_service.gallery.client import GalleryClient
from classifier_service.gallery.factory import open_gallery_store
from classifier_service.gallery.store import GalleryStore, NewEmbedding
from classifier_service.identify_service import request_identify
from facewire.config import MqttSettings
from facewire.erasure import erasure_marker
from facewire.errors import SchemaError
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.schema.gallery import GalleryCommand
from facewire_console.broker import LocalBroker
from harness.probes import Probes
from harness.processes import RunningClassifier, run_module
from tests.gallery_support import KNOWN, b64_file, largest_embedding, make_gallery, photos
from tests.web_support import PASSWORD, USER, RunningWeb

T0 = 1_790_000_000.0


def test_rename_commands_are_parsed_strictly() -> None:
    command = GalleryCommand.from_json(b'{"op": "rename", "person": "Ann", "to": "Ann_Smith", "actor": "cli"}')
    assert (command.op, command.person, command.to, command.actor) == ("rename", "Ann", "Ann_Smith", "cli")
    for body, reason in (
        ({"person": "Ann"}, "bad-person"),
        ({"person": "Ann", "to": "../etc"}, "bad-person"),
        ({"person": "Ann", "to": "unknown"}, "bad-person"),
        ({"person": "Ann", "to": 7}, "bad-person"),
        ({"person": "", "to": "Bob"}, "bad-person"),
        ({"person": "Ann", "to": "Ann"}, "same-name"),
        ({"person": "Ann", "to": "Bob", "merge": True}, "unknown-field"),
    ):
        with pytest.raises(SchemaError) as caught:
            GalleryCommand.from_json(json.dumps({"op": "rename", **body}).encode())
        assert caught.value.reason == reason, body


def store_for(url: str, tmp_path: Path, replica: str) -> GalleryStore:
    return open_gallery_store(tmp_path / replica, "" if url.startswith("sqlite") else url, replica)


def test_store_rename_moves_every_row_in_one_go(database_url: str, tmp_path: Path) -> None:
    store, other = store_for(database_url, tmp_path, "r1"), store_for(database_url, tmp_path, "r2")
    rng = np.random.default_rng(12)
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    items = [NewEmbedding(f"sha{i}", f"folder:Zoe/{i}.jpg", vector) for i, vector in enumerate(vectors)]
    try:
        store.add_embeddings("Zoe", "m", items[:2], T0)
        store.add_embeddings("adam", "m", items[2:], T0)
        store.add_negative("Zoe", "m", NewEmbedding("neg", "negative:cam/1", items[2].vector), T0)
        store.add_rejection("m", "folder:Zoe/blurry.jpg", "shaX", "blurry")
        store.update_last_seen([("Zoe", "cam1", T0 + 5)])
        store.audit("enroll", "cli", "Zoe", {"accepted": 2}, T0)
        assert store.rename("Zoe", "adam") is None and store.people("m") == {"Zoe": 2, "adam": 1}, "never a merge"
        counts = store.rename("Zoe", "Zoe_Smith")
        assert counts == {"embeddings": 2, "negatives": 1, "rejections": 1, "people": 1, "last_seen": 1, "audit": 1}
        assert store.people("m") == {"Zoe_Smith": 2, "adam": 1} and store.last_seen("Zoe") is None
        assert store.last_seen("Zoe_Smith") == ("cam1", T0 + 5) and store.negatives("m").people == ["Zoe_Smith"]
        assert set(store.origins("m", "folder:Zoe_Smith/")) == {"folder:Zoe_Smith/0.jpg", "folder:Zoe_Smith/1.jpg"}
        assert store.rejection("m", "folder:Zoe_Smith/blurry.jpg", "shaX") == "blurry"
        other.add_embeddings("Zoe_Smith", "m", items[:2], T0)
        other.add_embeddings("adam", "m", items[2:], T0)
        other.add_negative("Zoe_Smith", "m", NewEmbedding("neg", "x", items[2].vector), T0)
        assert other.version("m") == store.version("m"), "a renamed replica converges with one enrolled so"
        store.audit("rename", "cli", "Zoe_Smith", {"old": "Zoe", "new": "Zoe_Smith"}, T0)
        store.forget("Zoe_Smith")
        audit = json.dumps(store.audit_events())
        assert "Zoe" not in audit and erasure_marker("Zoe") in audit, "forget erases the earlier name too"
    finally:
        store.close()
        other.close()


def test_rename_over_mqtt_results_identify_folder_and_audit(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer
) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:4]})
    serena = photos(KNOWN / "Serena_Williams")
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="a").start()
    edge = Probes(broker.url)
    settings = MqttSettings(url=broker.url)
    client = GalleryClient(settings, actor="test").__enter__()
    try:
        images = [b64_file(p) for p in serena[:4]]
        enrolled = client.request({"op": "enroll", "person": "Serena_Williams", "images": images})
        assert enrolled[0]["accepted"] >= 3, enrolled
        renamed = client.request({"op": "rename", "person": "Serena_Williams", "to": "Serena_W"})[0]
        assert renamed["event"] == "renamed" and renamed["renamed"]["embeddings"] == enrolled[0]["accepted"], renamed
        assert renamed["gallery_version"] != enrolled[0]["gallery_version"]
        result = edge.ask(largest_embedding(analyzer, serena[5]))
        assert (result.name, result.gallery_version) == ("Serena_W", renamed["gallery_version"])
        answer = request_identify(settings, [load_image(serena[4])], 3, 30)
        assert [face.name for face in answer.results[0]][:1] == ["Serena_W"], answer
        refused = client.request({"op": "rename", "person": "Serena_W", "to": "Colin_Powell"})[0]
        assert (refused["event"], refused["reason"]) == ("error", "exists")
        missing = client.request({"op": "rename", "person": "Nobody", "to": "Somebody"})[0]
        assert (missing["event"], missing["reason"]) == ("error", "unknown-person")
        cli = run_module("facewire_console", ["rename", "Colin_Powell", "Colin", "--broker", broker.url], {})
        assert cli.returncode == 0 and "renamed Colin_Powell to Colin" in cli.stdout, cli.stderr
        assert (gallery / "Colin").is_dir() and not (gallery / "Colin_Powell").exists(), "the dataset folder moves"
        reloaded = client.request({"op": "reload"})[0]
        assert (reloaded["added"], reloaded["removed"], reloaded["unchanged"]) == (0, 0, 4), reloaded
        assert edge.ask(largest_embedding(analyzer, photos(KNOWN / "Colin_Powell")[5])).name == "Colin"
    finally:
        client.__exit__()
        edge.stop()
        assert classifier.stop() == 0
    store = sqlite3.connect(classifier.store_dir / "a" / "gallery.sqlite")
    rows = store.execute("SELECT actor, subject, details FROM audit WHERE op = 'rename' ORDER BY id").fetchall()
    store.close()
    assert [(actor, subject) for actor, subject, _d in rows] == [("test", "Serena_W"), ("cli", "Colin")] or rows
    details = json.loads(rows[0][2])
    assert (details["old"], details["new"], rows[1][1]) == ("Serena_Williams", "Serena_W", "Colin")


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:400]
    return found.group(1)


def test_the_library_rename_form_needs_csrf_and_shows_the_outcome(broker: LocalBroker, tmp_path: Path) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:3]})
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="w").start()
    env = {"FACEWIRE_MQTT__URL": broker.url, "FACEWIRE_WEB__COOKIE_SECURE": "false"}
    web = RunningWeb(tmp_path, env).start()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def post(path: str, form: dict[str, str]) -> tuple[int, str]:
        try:
            with opener.open(web.url + path, urllib.parse.urlencode(form).encode(), timeout=60) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    try:
        login = opener.open(web.url + "/login", timeout=10).read().decode()
        assert post("/login", {"csrf": csrf_of(login), "username": USER, "password": PASSWORD, "next": "/"})[0] == 200
        page = opener.open(web.url + "/library", timeout=60).read().decode()
        assert 'action="/library/rename"' in page and "Colin_Powell" in page
        assert post("/library/rename", {"person": "Colin_Powell", "to": "Colin"})[0] == 403
        assert post("/library/rename", {"person": "Colin_Powell", "to": "Colin", "csrf": "forged"})[0] == 403
        token = csrf_of(page)
        status, body = post("/library/rename", {"person": "Colin_Powell", "to": "../x", "csrf": token})
        assert status == 422 and "not a usable person name" in body
        status, body = post("/library/rename", {"person": "Colin_Powell", "to": "Colin", "csrf": token})
        assert status == 200 and "renamed Colin_Powell to Colin" in body and 'data-person="Colin"' in body, body
        status, body = post("/library/rename", {"person": "Nobody", "to": "Colin", "csrf": token})
        assert status == 409 and "unknown-person" in body
    finally:
        assert web.stop() == 0, web.log.read_text()
        assert classifier.stop() == 0
