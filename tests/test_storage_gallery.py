"""Classifier replicas keeping their gallery stores in a real PostgreSQL (one schema each): enrol over MQTT,
a new replica fetches the gallery from its peer, a restart keeps it, forget leaves no row of the person."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from classifier_service.gallery.client import GalleryClient
from facewire.config import MqttSettings
from facewire_console.broker import LocalBroker
from harness.processes import RunningClassifier
from tests.gallery_support import KNOWN, b64_file, make_gallery, photos

pytestmark = pytest.mark.slow


def versions(client: GalleryClient) -> dict[str, str]:
    return {e["instance"]: e["gallery_version"] for e in client.gather({"op": "status"}, 0.5, 10)}


def converged(client: GalleryClient, count: int, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    found = versions(client)
    while time.monotonic() < deadline and not (len(found) == count and len(set(found.values())) == 1):
        found = versions(client)
    return found


def rows_naming(url: str, person: str) -> dict[str, int]:
    """Rows naming ``person`` in each replica's schema (embeddings, people, last seen)."""
    found = {}
    with psycopg.connect(url) as conn:
        for (schema,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'gallery_%' ORDER BY 1"):
            count = conn.execute(
                f"SELECT (SELECT count(*) FROM {schema}.embeddings WHERE person = %s)"
                f" + (SELECT count(*) FROM {schema}.people WHERE name = %s)"
                f" + (SELECT count(*) FROM {schema}.last_seen WHERE person = %s)".encode(),
                (person, person, person),
            ).fetchone()
            found[schema] = int(count[0]) if count else -1
    return found


def test_replicas_keep_their_gallery_in_postgresql(broker: LocalBroker, tmp_path: Path, postgres_url: str) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:4]})
    env = {"FACEWIRE_GALLERY__DATABASE_URL": postgres_url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = RunningClassifier(broker.url, gallery, tmp_path / "a", instance="a", env=env).start()
    second = None
    try:
        with GalleryClient(MqttSettings(url=broker.url), actor="test") as client:
            images = [b64_file(p) for p in photos(KNOWN / "Serena_Williams")[:3]]
            enrolled = client.request({"op": "enroll", "person": "Serena_Williams", "images": images})[0]
            assert enrolled["accepted"] >= 2, enrolled
            second = RunningClassifier(broker.url, gallery, tmp_path / "b", instance="b", env=env).start()
            both = converged(client, 2)
            assert set(both) == {"a", "b"} and set(both.values()) == {enrolled["gallery_version"]}, both
            held = enrolled["accepted"] + 1  # her embeddings and her row in people
            assert rows_naming(postgres_url, "Serena_Williams") == {"gallery_a": held, "gallery_b": held}
            first.stop()
            first.start()
            assert "0 photos embedded now" in first.log.read_text().split("classifier a ready")[-2]
            assert versions(client)["a"] == enrolled["gallery_version"], "the store survived the restart"
            forgotten = client.request({"op": "forget", "person": "Serena_Williams"})[0]
            assert forgotten["event"] == "forgotten", forgotten
            after = converged(client, 2)
            assert len(set(after.values())) == 1 and enrolled["gallery_version"] not in after.values(), after
            assert rows_naming(postgres_url, "Serena_Williams") == {"gallery_a": 0, "gallery_b": 0}
    finally:
        first.stop()
        if second is not None:
            second.stop()
