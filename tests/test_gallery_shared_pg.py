"""The gallery of record in PostgreSQL, shared by every classifier replica (issue 21, part 1).

In one process first (several GalleryManagers on one real server: incremental follow, claims,
forget, migration from a schema per replica), then real classifier processes on a real mosquitto:
three replicas serve an enrolment made through one (time to served printed), a replica killed with
SIGKILL in the middle of a change leaves all or nothing, a new replica serves the same version
straight away, and forget leaves no row in any table and no vector in any replica.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from classifier_service.gallery.changes import version_of
from classifier_service.gallery.client import GalleryClient
from classifier_service.gallery.factory import open_gallery_store
from classifier_service.gallery.manager import GalleryManager
from classifier_service.gallery.operations import apply_command
from classifier_service.gallery.pg_store import PostgresGalleryStore
from classifier_service.gallery.store import NewEmbedding, vector_source
from facewire.config import GallerySettings, MqttSettings
from facewire.faces import FaceAnalyzer
from facewire.schema.gallery import GalleryCommand, b64_vectors
from facewire_console.broker import LocalBroker
from harness.postgres import PostgresServer
from harness.probes import Probes, probe
from harness.processes import RunningClassifier, run_module
from tests.gallery_support import KNOWN, b64_file, make_gallery, photos, result_for

DIM = 16


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def no_analyzer() -> FaceAnalyzer:
    raise AssertionError("these replicas enrol vectors, never photos")


def replica(url: str, tmp: Path, name: str) -> GalleryManager:
    """A gallery replica on the shared store (no analyzer: vectors only), serving it and following changes."""
    folder = tmp / name
    store = open_gallery_store(folder, url, name)
    manager = GalleryManager(store, folder, tmp / "photos", "m", GallerySettings(), no_analyzer, 0.5, 5, name)
    manager.restore()
    return manager


def enrol(manager: GalleryManager, person: str, vectors: np.ndarray, command: str = "") -> list[bool]:
    items = [NewEmbedding(vector_source(v), "embedding", v) for v in vectors]
    with manager.change(command or f"key-{person}-{len(vectors)}", command) as claimed:
        assert claimed
        added = manager.store.add_embeddings(person, "m", items, time.time())
        manager.append(person, vectors)
    return added


def served_by(manager: GalleryManager) -> dict[str, int]:
    people: dict[str, int] = {}
    for name in manager.matcher.labels:
        people[name] = people.get(name, 0) + 1
    return people


def wait_version(managers: list[GalleryManager], version: str, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(m.version == version for m in managers):
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"not all at {version}: {[m.version for m in managers]}")


@pytest.fixture
def three(postgres_url: str, tmp_path: Path) -> Iterator[list[GalleryManager]]:
    managers = [replica(postgres_url, tmp_path, name) for name in ("a", "b", "c")]
    for manager in managers:
        manager.open()
        manager.start_following()
    yield managers
    for manager in managers:
        manager.stop_following()
        manager.store.close()


def test_replicas_follow_changes_incrementally(three: list[GalleryManager]) -> None:
    a, b, c = three
    rng = np.random.default_rng(1)
    alice, bob = unit(rng, 3), unit(rng, 2)
    index_before = b.matcher.index
    assert enrol(a, "alice", alice) == [True, True, True]
    assert a.version == version_of(1) and served_by(a) == {"alice": 3}  # served by the writer on commit
    wait_version([b, c], a.version)
    assert served_by(b) == served_by(c) == {"alice": 3}
    assert b.matcher.index is not index_before
    enrol(b, "bob", bob)
    wait_version([a, c], b.version)
    b_index = b.matcher.index
    assert [m.name for m in c.matcher.match(bob)] == ["bob", "bob"]
    np.testing.assert_allclose(c._vectors, np.vstack([alice, bob]), atol=1e-6)
    # rename relabels rows only (the same index object is served), forget takes rows out of the flat index
    with a.change("rename-1", "rename-1") as claimed:
        assert claimed and a.store.rename("bob", "robert") is not None
    wait_version([b, c], a.version)
    assert served_by(c) == {"alice": 3, "robert": 2} and b.matcher.index is b_index
    b.observe([(probe(alice[0], "door", 1), result_for(probe(alice[0], "door", 1), "alice"))])
    assert b.probe(("door", 1)) is not None
    with c.change("forget-1", "forget-1"):
        c.store.forget("alice")
    wait_version([a, b], c.version)
    assert b.probe(("door", 1)) is None, "a replica that followed the forget holds no probe named alice"
    for manager in three:
        assert served_by(manager) == {"robert": 2} and manager.matcher.index.ntotal == 2
        assert [m.name for m in manager.matcher.match(bob)] == ["robert", "robert"]
        np.testing.assert_allclose(manager._vectors, bob, atol=1e-6)
        assert manager._ids == c.store.rows("m").ids


def test_following_keeps_what_a_fresh_load_serves(postgres_url: str, tmp_path: Path) -> None:
    """Following adds, more rows of a person, removes, a rename and a forget, one follow() at a time, serves
    the rows, vectors, centroids and decisions a replica loading the gallery afresh serves (new rows in a small
    part beside the shared index); the arrays of a Matcher served before are never written to."""
    writer, follower = replica(postgres_url, tmp_path, "writer"), replica(postgres_url, tmp_path, "follower")
    rng = np.random.default_rng(11)
    enrol(writer, "ann", unit(rng, 3))
    follower.follow()
    served_before, kept = follower._vectors, follower._vectors.copy()
    centroid_before = follower.matcher._centroids["ann"].copy()
    steps = [
        lambda: enrol(writer, "ben", unit(rng, 2)),
        lambda: enrol(writer, "ann", unit(rng, 2)),  # more rows of a person served
        lambda: writer.store.delete_rows(writer.store.rows("m").ids[1:2]),  # one of ann's rows
        lambda: writer.store.rename("ben", "bert"),
        lambda: enrol(writer, "cy", unit(rng, 40)),  # past the spare room: a larger array
        lambda: writer.store.forget("ann"),
    ]
    for step in steps:
        step()
        follower.follow()
        fresh = replica(postgres_url, tmp_path, f"fresh{follower.seq}")
        try:
            assert follower.version == fresh.version and follower.matcher.labels == fresh.matcher.labels
            assert follower._ids == fresh._ids
            np.testing.assert_array_equal(follower._vectors, fresh._vectors)
            mine, theirs = follower.matcher._centroids, fresh.matcher._centroids
            assert sorted(mine) == sorted(theirs)
            probes = fresh._vectors
            assert [m.name for m in follower.matcher.match(probes)] == [m.name for m in fresh.matcher.match(probes)]
            for person, centroid in theirs.items():
                np.testing.assert_allclose(mine[person], centroid, atol=1e-6)
        finally:
            fresh.store.close()
    np.testing.assert_array_equal(served_before, kept)
    assert "ann" not in follower.matcher._centroids and centroid_before.shape == (DIM,)
    for manager in (writer, follower):
        manager.store.close()


def test_a_replica_catches_up_after_losing_its_listening_connection(
    three: list[GalleryManager], postgres_url: str
) -> None:
    """The server drops b's LISTEN connection: b reconnects, catches up on what it missed, and follows again."""
    a, b, _c = three
    follow_pid = "SELECT pid FROM pg_stat_activity WHERE application_name = 'facewire-follow-b'"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        (before,) = conn.execute(follow_pid).fetchone() or (None,)
        assert before is not None
        conn.execute("SELECT pg_terminate_backend(%s)", (before,))
        enrol(a, "gina", unit(np.random.default_rng(6), 2))  # while b is not listening
        wait_version([b], a.version)
        after = conn.execute(follow_pid).fetchone()
    assert after is not None and after[0] != before and served_by(b) == {"gina": 2}
    enrol(a, "hal", unit(np.random.default_rng(7), 1))
    wait_version([b], a.version)


def test_a_command_is_applied_once(three: list[GalleryManager]) -> None:
    """Every replica gets every command; the first to claim it applies it, the others wait and skip."""
    vectors = unit(np.random.default_rng(2), 2)
    outcomes: dict[str, bool] = {}

    def apply(manager: GalleryManager) -> None:
        with manager.change("same-command", "cmd-1") as claimed:
            outcomes[manager.instance] = claimed
            if claimed:
                items = [NewEmbedding(vector_source(v), "embedding", v) for v in vectors]
                manager.store.add_embeddings("carol", "m", items, time.time())
                time.sleep(0.3)  # the others block on the claim meanwhile

    threads = [threading.Thread(target=apply, args=(m,)) for m in three]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == [False, False, True], outcomes
    wait_version(three, three[0].version)
    assert all(served_by(m) == {"carol": 2} for m in three)


def test_a_failed_change_leaves_nothing(three: list[GalleryManager], postgres_url: str) -> None:
    a, b, _c = three
    vectors = unit(np.random.default_rng(3), 4)
    with pytest.raises(RuntimeError), a.change("failing", "failing"):
        a.store.add_embeddings("dave", "m", [NewEmbedding(vector_source(v), "e", v) for v in vectors], time.time())
        a.store.audit("enroll", "test", "dave", {}, time.time())
        raise RuntimeError("killed mid-change")
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM gallery.embeddings) + (SELECT count(*) FROM gallery.people)"
            " + (SELECT count(*) FROM gallery.audit) + (SELECT count(*) FROM gallery.changes)"
            " + (SELECT count(*) FROM gallery.commands)"
        ).fetchone()
    assert rows == (0,)
    assert a.version == b.version == version_of(0)


def test_unknown_faces_are_clustered_per_replica(three: list[GalleryManager]) -> None:
    """Cluster numbers are each replica's own: naming a's cluster 1 takes a's faces only; a forget still
    looks at every replica's unknown faces."""
    a, b, _c = three
    vectors = unit(np.random.default_rng(8), 3)
    a.store.add_unknowns("m", [("door", 1, 1.0, 1, vectors[0]), ("door", 2, 2.0, 1, vectors[1])])
    b.store.add_unknowns("m", [("hall", 1, 3.0, 1, vectors[2])])
    assert [u.node for u in a.store.unknowns("m", cluster=1)] == ["door", "door"]
    assert [u.node for u in b.store.unknowns("m", cluster=1)] == ["hall"]
    assert [u.node for u in b.store.unknowns("m", mine=True)] == ["hall"]
    assert len(a.store.unknowns("m")) == 3
    listed = apply_command(a, GalleryCommand("unknowns", "u1", "ops")).events[0].details["clusters"]
    assert [(c["cluster"], c["size"]) for c in listed] == [(f"{a.instance}:1", 2)], "b's cluster 1 is not a's"


def test_a_replica_far_behind_reloads(postgres_url: str, tmp_path: Path) -> None:
    """Changes pruned past what a replica serves: it loads the gallery again instead of following."""
    first, late = replica(postgres_url, tmp_path, "first"), replica(postgres_url, tmp_path, "late")
    try:
        enrol(first, "erin", unit(np.random.default_rng(4), 2))
        with psycopg.connect(postgres_url) as conn:
            conn.execute("DELETE FROM gallery.changes")
            conn.execute(
                "INSERT INTO gallery.changes (seq, kind, ids, command, replica, ts) VALUES (9, 'x', '[]', '', '', 0)"
            )
        late.follow()
        assert late.version == version_of(9) and served_by(late) == {"erin": 2}
    finally:
        for manager in (first, late):
            manager.store.close()


def test_a_schema_per_replica_is_adopted(postgres_url: str, tmp_path: Path) -> None:
    """Migration: the first replica to open the shared gallery copies its old ``gallery_<id>`` schema."""
    vectors = unit(np.random.default_rng(5), 3)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA gallery_old")
        conn.execute("SET search_path = gallery_old")
        from facewire.storage.migrate import migrate_postgres

        migrate_postgres(conn, "gallery", upto=2)
        for i, v in enumerate(vectors):
            conn.execute(
                "INSERT INTO embeddings (person, model, source, origin, vector, created)"
                " VALUES ('fay', 'm', %s, 'x', %s, 0)",
                (f"s{i}", v.astype("<f4").tobytes()),
            )
    manager = replica(postgres_url, tmp_path, "old")
    other = replica(postgres_url, tmp_path, "other")
    try:
        assert served_by(manager) == served_by(other) == {"fay": 3}
        assert isinstance(manager.store, PostgresGalleryStore) and manager.store.adopt("old") == 0  # once only
    finally:
        for each in (manager, other):
            each.store.close()


# -- real classifier processes, a real mosquitto, one shared gallery -------------------------------------------


@dataclass
class Site:
    broker: LocalBroker
    url: str
    gallery: Path
    root: Path
    replicas: dict[str, RunningClassifier]

    def start(self, name: str) -> RunningClassifier:
        (self.root / name).mkdir(exist_ok=True)
        env = {"FACEWIRE_GALLERY__DATABASE_URL": self.url}
        running = RunningClassifier(self.broker.url, self.gallery, self.root / name, instance=name, env=env)
        self.replicas[name] = running.start()
        return running


@pytest.fixture(scope="module")
def site(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Three classifier replicas on one mosquitto, their gallery in one PostgreSQL database."""
    root = tmp_path_factory.mktemp("shared-gallery")
    broker = LocalBroker(root / "broker").start()
    gallery = make_gallery(root / "gallery", {"Colin_Powell": photos(KNOWN / "Colin_Powell")[:2]})
    found = Site(broker, postgres_server.create_database(), gallery, root, {})
    try:
        for name in ("a", "b", "c"):
            found.start(name)
        yield found
    finally:
        for running in found.replicas.values():
            running.stop()
        broker.stop()


def statuses(client: GalleryClient, count: int, timeout: float = 20.0) -> dict[str, dict[str, Any]]:
    """The status event of every replica (at least ``count`` of them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {e["instance"]: e for e in client.gather({"op": "status"}, 0.3, 10)}
        if len(found) >= count or time.monotonic() > deadline:
            return found


def served_events(client: GalleryClient, request: str, count: int, timeout: float = 20.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := {e["instance"]: e for e in client.events(request) if e["event"] == "served"}) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"served by {len(found)} of {count}: {client.events(request)}")
        time.sleep(0.02)
    return found


def table_rows(url: str, sql: str, *args: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode(), args).fetchone()
    return int(row[0]) if row else -1


@pytest.mark.slow  # the three replicas start in ~25 s (module fixture); the test itself in seconds
def test_an_enrolment_through_one_replica_is_served_by_all(site: Site) -> None:
    images = [b64_file(p) for p in photos(KNOWN / "Serena_Williams")[:3]]
    with GalleryClient(MqttSettings(url=site.broker.url), actor="test") as client:
        sent = time.time()
        request = client.send({"op": "enroll", "person": "Serena_Williams", "images": images})
        (enrolled,) = client.wait(request, "enroll", 3, 60)  # what `facewire enroll --replicas 3` waits for
        assert enrolled["event"] == "enrolled" and enrolled["accepted"] >= 2, enrolled
        others = served_events(client, request, 2, timeout=0)
        assert set(others) | {enrolled["instance"]} == {"a", "b", "c"}
        assert {e["gallery_version"] for e in others.values()} == {enrolled["gallery_version"]}
        times = {e["instance"]: round(e["ts"] - sent, 3) for e in [enrolled, *others.values()]}
        print(f"\ntime to served (s from sending; 3 photos checked by {enrolled['instance']}): {times}")
        now = statuses(client, 3)
        assert {s["gallery_version"] for s in now.values()} == {enrolled["gallery_version"]}
        assert len({s["embeddings"] for s in now.values()}) == 1
    held = table_rows(site.url, "SELECT count(*) FROM gallery.embeddings WHERE person = %s", "Serena_Williams")
    assert held == enrolled["accepted"]
    with psycopg.connect(site.url) as conn:
        stored = conn.execute("SELECT vector FROM gallery.embeddings WHERE person = 'Serena_Williams'").fetchone()
    assert stored is not None
    edge = Probes(site.broker.url, node="shared-door")
    try:
        result = edge.ask(np.frombuffer(bytes(stored[0]), dtype="<f4"))
    finally:
        edge.stop()
    assert (result.name, result.gallery_version) == ("Serena_Williams", enrolled["gallery_version"])


@pytest.mark.slow  # the three replicas start in ~25 s (module fixture); the test itself in seconds
def test_a_replica_killed_in_the_middle_of_a_change(site: Site) -> None:
    """SIGKILL while the applying replica is inserting rows: nothing of it is committed; a survivor (blocked
    on the claim until then) applies the command whole, and the restarted replica does not apply it again."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((600, 128)).astype(np.float32)  # a command under the broker's 256 KiB
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    model = str(site_model(site.url))
    count = "SELECT count(*) FROM gallery.embeddings WHERE person = 'Kim_Mid_Change'"
    with GalleryClient(MqttSettings(url=site.broker.url), actor="test") as client, psycopg.connect(site.url) as conn:
        before = statuses(client, 3)["a"]["gallery_version"]
        body = {"op": "enroll", "person": "Kim_Mid_Change", "embeddings": b64_vectors(vectors), "model": model}
        request = client.send(body)
        victim = None
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline:
            row = conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE query LIKE 'INSERT INTO embeddings%%'"
                " AND xact_start IS NOT NULL AND application_name LIKE 'facewire-gallery-%%'"
            ).fetchone()
            conn.commit()
            victim = None if row is None else str(row[0]).removeprefix("facewire-gallery-")
        assert victim in site.replicas, victim
        killed = site.replicas[victim]
        assert killed.process is not None
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait(10)
        assert table_rows(site.url, count) in (0, len(vectors))  # all or nothing, at every moment
        (enrolled,) = client.wait(request, "enroll", 1, 60)
        assert enrolled["instance"] != victim and enrolled["accepted"] == len(vectors), enrolled
        assert table_rows(site.url, count) == len(vectors)
        site.start(victim)
        now = statuses(client, 3)
        assert {s["gallery_version"] for s in now.values()} == {enrolled["gallery_version"]} != {before}
        assert len({s["embeddings"] for s in now.values()}) == 1
        assert table_rows(site.url, count) == len(vectors), "the redelivered command was not applied twice"
        forgotten = client.request({"op": "forget", "person": "Kim_Mid_Change"})[0]
        assert forgotten["event"] == "forgotten"


def site_model(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT model FROM gallery.embeddings LIMIT 1").fetchone()
    assert row is not None, "the folder's photos are enrolled"
    return str(row[0])


@pytest.mark.slow  # the three replicas start in ~25 s (module fixture); the test itself in seconds
def test_a_new_replica_serves_the_same_version_straight_away(site: Site) -> None:
    with GalleryClient(MqttSettings(url=site.broker.url), actor="test") as client:
        version = statuses(client, 3)["a"]["gallery_version"]
        joined = site.start("d")
        try:
            ready = joined.log.read_text()
            assert f"gallery {version}:" in ready and "0 photos embedded now" in ready, ready[-500:]
            now = statuses(client, 4)
            assert now["d"]["gallery_version"] == version and now["d"]["embeddings"] == now["a"]["embeddings"]
        finally:
            joined.stop()
            del site.replicas["d"]


@pytest.mark.slow  # the three replicas start in ~25 s (module fixture); the test itself in seconds
def test_forget_leaves_no_row_in_any_table_and_no_vector_in_any_replica(site: Site) -> None:
    person = "Tony_Blair"
    images = [b64_file(p) for p in photos(KNOWN / person)[:2]]
    with GalleryClient(MqttSettings(url=site.broker.url), actor="test") as client:
        enrolled = client.request({"op": "enroll", "person": person, "images": images})[0]
        assert enrolled["accepted"] >= 1, enrolled
        request = client.send({"op": "forget", "person": person})
        (forgotten,) = client.wait(request, "forget", 1, 60)
        served_events(client, request, 2)
        now = statuses(client, 3)
    rows = table_rows(site.url, "SELECT count(*) FROM gallery.embeddings")
    assert {s["gallery_version"] for s in now.values()} == {forgotten["gallery_version"]}
    assert {s["embeddings"] for s in now.values()} == {rows}, "every replica holds exactly the stored rows"
    with psycopg.connect(site.url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'gallery' AND data_type = 'text'"
        ).fetchall()
        naming = {
            f"{table}.{column}": conn.execute(
                f'SELECT count(*) FROM gallery.{table} WHERE "{column}" LIKE %s'.encode(), (f"%{person}%",)
            ).fetchone()
            for table, column in columns
        }
    assert len(naming) > 20 and set(naming.values()) == {(0,)}, naming


def offline(site: Site, *args: str) -> dict[str, Any]:
    """``facewire ARGS --offline --json`` against the site's shared gallery, as a process of its own."""
    env = {
        "FACEWIRE_GALLERY__DATABASE_URL": site.url,
        "FACEWIRE_GALLERY__STORE_DIR": str(site.root / "cli"),
        "FACEWIRE_CLASSIFIER__GALLERY": str(site.gallery),
    }
    done = run_module("facewire_console", [*args, "--offline", "--json"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def last_change(url: str) -> tuple[str, str]:
    """(kind, command id) of the newest change."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT kind, command FROM gallery.changes ORDER BY seq DESC LIMIT 1").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


@pytest.mark.slow  # the three replicas start in ~25 s (module fixture); the test itself in ~15 s
def test_offline_commands_on_the_shared_gallery_are_claimed_and_served_by_the_running_replicas(site: Site) -> None:
    """``--offline`` enrol, rename and forget with replicas running: each is claimed and committed as one
    transaction of the change log like a command over MQTT, every running replica serves it (a ``served``
    event for the CLI's command id), and the rows are stored once."""
    person, photo_dir = "Offline_Person", site.root / "offline-photos"
    photo_dir.mkdir()
    for photo in photos(KNOWN / "Serena_Williams")[4:6]:
        (photo_dir / photo.name).write_bytes(photo.read_bytes())
    count = "SELECT count(*) FROM gallery.embeddings WHERE person = %s"
    with GalleryClient(MqttSettings(url=site.broker.url), actor="test") as client:
        running = sorted(statuses(client, 3))
        claims = table_rows(site.url, "SELECT count(*) FROM gallery.commands")
        enrolled = offline(site, "enroll", person, str(photo_dir))
        assert enrolled["enrolled"] >= 1, enrolled
        kind, command = last_change(site.url)
        assert kind == "add" and command.startswith("offline-"), command
        assert table_rows(site.url, "SELECT count(*) FROM gallery.commands") == claims + 1, "the CLI claimed it"
        assert table_rows(site.url, count, person) == enrolled["enrolled"]
        served = served_events(client, command, len(running))
        assert sorted(served) == running and len({e["gallery_version"] for e in served.values()}) == 1
        offline(site, "rename", person, "Offline_Renamed")
        kind, command = last_change(site.url)
        assert kind == "relabel" and sorted(served_events(client, command, len(running))) == running
        offline(site, "forget", "Offline_Renamed")
        kind, command = last_change(site.url)
        assert kind == "remove" and sorted(served_events(client, command, len(running))) == running
        now = statuses(client, len(running))
    stored = table_rows(site.url, "SELECT count(*) FROM gallery.embeddings")
    assert table_rows(site.url, count, "Offline_Renamed") == 0
    assert {s["embeddings"] for s in now.values()} == {stored} and len(
        {s["gallery_version"] for s in now.values()}
    ) == 1
