"""Gallery management through a real mosquitto and real classifier processes, with real photos."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from classifier_service.gallery.client import GalleryClient
from classifier_service.gallery.index_file import INDEX_FILE
from facewire.config import MqttSettings
from facewire.faces import FaceAnalyzer
from facewire.gallery_folder import EmbeddingCache, build_gallery
from facewire.models.registry import sha256_file
from facewire.mqtt import MqttConnection
from facewire_console.broker import LocalBroker
from harness.probes import Probes
from harness.processes import Collector, RunningClassifier, run_module
from tests.gallery_support import KNOWN, b64_file, largest_embedding, make_gallery, photos


def restart(classifier: RunningClassifier) -> float:
    assert classifier.stop() == 0
    started = time.perf_counter()
    classifier.start()
    return time.perf_counter() - started


def no_trace(folder: Path, name: str, vectors: np.ndarray) -> None:
    """No file of a store folder holds ``name``; neither SQLite nor the index file holds a vector near ``vectors``."""
    for file in folder.iterdir():
        assert name.encode() not in file.read_bytes(), f"{name} found in {file}"
    db = sqlite3.connect(folder / "gallery.sqlite")
    for table in ("embeddings", "negatives", "unknowns"):
        stored = [np.frombuffer(blob, dtype="<f4") for (blob,) in db.execute(f"SELECT vector FROM {table}")]
        if stored:
            assert float(np.max(np.stack(stored) @ vectors.T)) < 0.97, table
    db.close()
    index = faiss.read_index(str(folder / INDEX_FILE))
    assert float(np.max(index.reconstruct_n(0, index.ntotal) @ vectors.T)) < 0.97, "index file"


def test_enrol_restart_forget_over_mqtt_leave_no_trace(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer
) -> None:
    gallery = make_gallery(tmp_path / "gallery", {p: photos(KNOWN / p)[:4] for p in ("Colin_Powell", "Tony_Blair")})
    cache_dir = tmp_path / "model-cache"
    cache_dir.mkdir()
    (cache_dir / "models").symlink_to(Path.home() / ".cache" / "facewire" / "models", target_is_directory=True)
    legacy = EmbeddingCache(cache_dir / "gallery" / "embeddings.sqlite")  # what an older version left behind
    build_gallery(gallery, analyzer, legacy)
    legacy.close()
    tony_hashes = [sha256_file(p) for p in (gallery / "Tony_Blair").iterdir()]
    tony = np.stack([largest_embedding(analyzer, p) for p in photos(KNOWN / "Tony_Blair")])
    serena = np.stack([largest_embedding(analyzer, p) for p in photos(KNOWN / "Serena_Williams")])
    classifier = RunningClassifier(
        broker.url, gallery, tmp_path, instance="a", env={"FACEWIRE_MODEL__CACHE_DIR": str(cache_dir)}
    ).start()
    edge = Probes(broker.url)
    client = GalleryClient(MqttSettings(url=broker.url), actor="test").__enter__()
    try:
        assert edge.ask(serena[5]).name == "unknown"
        assert edge.ask(tony[5]).name == "Tony_Blair"
        images = [b64_file(p) for p in photos(KNOWN / "Serena_Williams")[:4]]
        enrolled = client.request({"op": "enroll", "person": "Serena_Williams", "images": images})[0]
        assert enrolled["event"] == "enrolled" and enrolled["accepted"] >= 3, enrolled
        next_result = edge.ask(serena[5])
        assert next_result.name == "Serena_Williams" and next_result.gallery_version == enrolled["gallery_version"]

        restart_seconds = restart(classifier)
        log = classifier.log.read_text()
        assert re.findall(r"\((\d+) photos embedded now", log)[-1] == "0" and "index restored from file" in log
        assert restart_seconds < 30, restart_seconds
        assert edge.ask(serena[4]).name == "Serena_Williams", "the MQTT enrolment survived the restart"

        assert classifier.stop() == 0
        index_file = classifier.store_dir / "a" / INDEX_FILE
        damaged = bytearray(index_file.read_bytes())
        damaged[len(damaged) // 3] ^= 0x5A  # a flipped byte inside the vectors
        index_file.write_bytes(bytes(damaged))
        classifier.start()
        last_start = classifier.log.read_text().split("classifier a ready")[-2]
        assert "index-file-rejected" in last_start, last_start
        assert re.findall(r"\((\d+) photos embedded now", last_start)[-1] == "0" and "index built" in last_start
        assert edge.ask(serena[3]).name == "Serena_Williams", "rebuilt from SQLite, not served corrupt"

        for person in ("Tony_Blair", "Serena_Williams"):
            forgotten = client.request({"op": "forget", "person": person})[0]
            assert forgotten["event"] == "forgotten" and forgotten["removed"]["embeddings"] >= 3, forgotten
        assert forgotten["gallery_version"] != enrolled["gallery_version"]
        assert forgotten["removed"]["unknowns"] == 1, "Serena's sighting from before her enrolment is erased too"
        no_trace(classifier.store_dir / "a", "Tony_Blair", tony)
        no_trace(classifier.store_dir / "a", "Serena_Williams", serena)
        # From here on the erased people are strangers: new sightings are kept like any unknown face.
        assert edge.ask(tony[5]).name == "unknown" and edge.ask(serena[5]).name == "unknown"
        assert edge.ask(largest_embedding(analyzer, photos(KNOWN / "Colin_Powell")[5])).name == "Colin_Powell"
    finally:
        client.__exit__()
        edge.stop()
        assert classifier.stop() == 0
    assert not (gallery / "Tony_Blair").exists(), "enrolment photos are deleted"
    db = sqlite3.connect(cache_dir / "gallery" / "embeddings.sqlite")
    left = db.execute(
        f"SELECT count(*) FROM embeddings WHERE sha256 IN ({','.join('?' * len(tony_hashes))})", tony_hashes
    )
    assert left.fetchone()[0] == 0, "the photo-hash embedding cache is purged"
    db.close()
    store = sqlite3.connect(classifier.store_dir / "a" / "gallery.sqlite")
    rows = store.execute("SELECT op, actor, subject, details FROM audit WHERE op = 'forget'").fetchall()
    store.close()
    assert [(op, actor) for op, actor, _s, _d in rows] == [("forget", "test"), ("forget", "test")]
    assert all(
        subject.startswith("erased:") and json.loads(details)["embeddings"] >= 3 for _o, _a, subject, details in rows
    )


def test_replica_killed_mid_enrolment_converges(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer, shared_data: Path
) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:4]})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = RunningClassifier(broker.url, gallery, tmp_path / "a", instance="a").start()
    second = RunningClassifier(broker.url, gallery, tmp_path / "b", instance="b").start()
    events = Collector(broker.url, ["facewire/gallery/events"]).start()
    people = [d for d in sorted((shared_data / "lfw-dev" / "known").iterdir()) if len(photos(d)) >= 12][:4]
    client = GalleryClient(MqttSettings(url=broker.url), actor="test").__enter__()
    try:
        ids = [
            client.send({"op": "enroll", "person": d.name, "images": [b64_file(p) for p in photos(d)[:12]]})
            for d in people
        ]
        first_done = time.monotonic() + 60
        while not any(e["instance"] == "b" and e["event"] == "enrolled" for e in decoded(events)):
            assert time.monotonic() < first_done, "replica b enrolled nothing within 60 s"
            time.sleep(0.02)
        assert second.process is not None  # killed while it works on the next command
        second.process.send_signal(signal.SIGKILL)
        second.process.wait(10)
        done_before_kill = [e for e in decoded(events) if e["instance"] == "b" and e["event"] == "enrolled"]
        assert len(done_before_kill) < len(ids), "the replica was killed after it had finished: not mid-enrolment"
        later = client.send({"op": "forget", "person": people[0].name})  # while b is down
        client.wait(later, "forget", 1, 60)
        second.start()
        for request in [*ids]:
            client.wait(request, "enroll", 2, 120)
        client.wait(later, "forget", 2, 120)
        versions = {e["instance"]: e["gallery_version"] for e in client.gather({"op": "status"}, 1.0, 30)}
    finally:
        client.__exit__()
        events.stop()
        first.stop()
        second.stop()
    assert set(versions) == {"a", "b"} and versions["a"] == versions["b"], versions


def decoded(collector: Collector) -> list[dict[str, Any]]:
    return [json.loads(p) for _t, p in collector.matching(lambda t: True)]


def test_malformed_gallery_commands_are_dead_lettered(broker: LocalBroker, tmp_path: Path) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:2]})
    watch = Collector(broker.url, ["facewire/deadletter/classifier", "facewire/gallery/events"]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path).start()
    sender = MqttConnection(MqttSettings(url=broker.url), "test-bad-commands")
    sender.connect()
    try:
        for body in (b"not json", b'{"op":"forget","person":"../../etc"}', b'{"op":"enroll","person":"A","x":1}'):
            sender.publish("facewire/gallery/cmd/operator", body)
        letters = watch.wait_for(lambda t: "deadletter" in t, 3, timeout=20)
        with GalleryClient(MqttSettings(url=broker.url)) as client:
            status = client.request({"op": "status"})[0]
    finally:
        sender.close()
        classifier.stop()
        watch.stop()
    assert sorted(json.loads(p)["reason"] for _t, p in letters) == ["bad-person", "not-json", "unknown-field"]
    assert status["people"] == 1, "the service kept going"


def test_unknown_visitors_are_clustered_and_one_cluster_is_named_from_the_cli(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer, shared_data: Path
) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:4]})
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="a").start()
    visitors = [d for d in sorted((shared_data / "lfw-dev" / "known").iterdir()) if len(photos(d)) >= 8][20:23]
    edge = Probes(broker.url, node="gate")
    env = {"FACEWIRE_MQTT__URL": broker.url}
    try:
        for person_dir in visitors:
            for file in photos(person_dir)[:6]:
                assert edge.ask(largest_embedding(analyzer, file)).name == "unknown"
        listing = run_module("facewire_console", ["unknowns", "--min-size", "3"], env, timeout=60)
        assert listing.returncode == 0, listing.stderr
        clusters = re.findall(r"(a:\d+)\s+│\s+(\d+)\s+│.*gate x(\d+)", listing.stdout)
        assert len(clusters) == 3 and all(int(size) >= 4 for _c, size, _n in clusters), listing.stdout
        newcomer = visitors[0].name
        first = largest_embedding(analyzer, photos(visitors[0])[0])
        named = run_module(
            "facewire_console", ["unknowns", "name", _cluster_of(classifier, first), newcomer], env, timeout=60
        )
        assert named.returncode == 0 and "enrolled" in named.stdout, named.stdout + named.stderr
        fresh = largest_embedding(analyzer, photos(visitors[0])[7])
        assert edge.ask(fresh).name == newcomer
        whereis = run_module("facewire_console", ["whereis", newcomer], env, timeout=60)
        assert whereis.returncode == 0 and f"{newcomer} last seen on gate" in whereis.stdout, whereis.stdout
    finally:
        edge.stop()
        classifier.stop()


def _cluster_of(classifier: RunningClassifier, vector: np.ndarray) -> str:
    """The cluster id (as listed) whose members are most like ``vector`` (read from the store, read-only)."""
    db = sqlite3.connect(classifier.store_dir / "a" / "gallery.sqlite")
    rows = db.execute("SELECT cluster, vector FROM unknowns").fetchall()
    db.close()
    best = max(rows, key=lambda row: float(np.frombuffer(row[1], dtype="<f4") @ vector))
    return f"a:{best[0]}"


def test_relabel_and_reject_a_result_over_mqtt(broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:4]})
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="a").start()
    edge = Probes(broker.url, node="hall")
    tony = [largest_embedding(analyzer, p) for p in photos(KNOWN / "Tony_Blair")]
    try:
        with GalleryClient(MqttSettings(url=broker.url), actor="operator") as client:
            first = edge.ask(tony[0])
            assert first.name == "unknown"
            relabelled = client.request({"op": "relabel", "result": f"hall/{first.seq}", "person": "Tony_Blair"})
            assert relabelled[0]["event"] == "enrolled" and relabelled[0]["person"] == "Tony_Blair"
            named = edge.ask(tony[1])
            assert named.name == "Tony_Blair", named
            rejected = client.request({"op": "reject", "result": f"hall/{named.seq}"})
            assert rejected[0]["event"] == "negative-added" and rejected[0]["person"] == "Tony_Blair"
            assert edge.ask(tony[1]).name != "Tony_Blair", "the rejected mistake is not repeated"
            missing = client.send({"op": "reject", "result": "hall/999"})
            time.sleep(1.0)
            assert [e["event"] for e in client.events(missing)] == ["not-held"]
    finally:
        edge.stop()
        classifier.stop()


def test_a_new_replica_fetches_the_gallery_from_its_peers(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer
) -> None:
    gallery = make_gallery(tmp_path / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:4]})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = RunningClassifier(broker.url, gallery, tmp_path / "a", instance="a").start()
    second = None
    try:
        with GalleryClient(MqttSettings(url=broker.url), actor="test") as client:
            images = [b64_file(p) for p in photos(KNOWN / "Serena_Williams")[:3]]
            assert client.request({"op": "enroll", "person": "Serena_Williams", "images": images})[0]["accepted"] >= 2
            second = RunningClassifier(broker.url, gallery, tmp_path / "b", instance="b").start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                versions = {e["instance"]: e["gallery_version"] for e in client.gather({"op": "status"}, 0.5, 10)}
                if len(versions) == 2 and len(set(versions.values())) == 1:
                    break
            assert len(versions) == 2 and len(set(versions.values())) == 1, versions
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_forget_whose_photo_deletion_fails_never_re_enrols_and_finishes_at_restart(
    broker: LocalBroker, tmp_path: Path, analyzer: FaceAnalyzer
) -> None:
    """The store is erased before the photos; a photo that cannot be deleted leaves a tombstone, not a person."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("needs chattr (an immutable file is what even root cannot delete)")
    gallery = make_gallery(tmp_path / "gallery", {p: photos(KNOWN / p)[:3] for p in ("Colin_Powell", "Tony_Blair")})
    locked = sorted((gallery / "Tony_Blair").iterdir())[-1]  # the first one deleted: nothing goes
    tony = largest_embedding(analyzer, photos(KNOWN / "Tony_Blair")[5])
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="t").start()
    store = classifier.store_dir / "t" / "gallery.sqlite"
    edge = Probes(broker.url)
    client = GalleryClient(MqttSettings(url=broker.url), actor="test").__enter__()
    immutable = False
    try:
        assert edge.ask(tony).name == "Tony_Blair"
        immutable = subprocess.run([chattr, "+i", str(locked)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("this file system has no immutable attribute")
        forgotten = client.request({"op": "forget", "person": "Tony_Blair"})[0]
        assert forgotten["event"] == "forgotten" and forgotten.get("pending") == ["photos"], forgotten
        assert locked.exists(), "the injected failure is real: the photo is still there"
        assert edge.ask(tony).name == "unknown"

        restart(classifier)
        assert rows_of(store, "Tony_Blair") == 0, "start-up did not enrol the forgotten person from the photo left"
        assert edge.ask(tony).name == "unknown"
        assert tombstones(store) == 1 and locked.exists()

        subprocess.run([chattr, "-i", str(locked)], check=True)
        immutable = False
        restart(classifier)
        assert not (gallery / "Tony_Blair").exists(), "start-up finished the erasure"
        assert tombstones(store) == 0 and rows_of(store, "Tony_Blair") == 0
        assert edge.ask(tony).name == "unknown"
    finally:
        if immutable:
            subprocess.run([chattr, "-i", str(locked)], check=True)
        client.__exit__()
        edge.stop()
        assert classifier.stop() == 0


def rows_of(store: Path, person: str) -> int:
    db = sqlite3.connect(store)
    try:
        return int(db.execute("SELECT count(*) FROM embeddings WHERE person = ?", (person,)).fetchone()[0])
    finally:
        db.close()


def tombstones(store: Path) -> int:
    db = sqlite3.connect(store)
    try:
        return int(db.execute("SELECT count(*) FROM tombstones").fetchone()[0])
    finally:
        db.close()
