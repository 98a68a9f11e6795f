"""The stores on both engines (SQLite file, real PostgreSQL server), the same cases on each:
rows, idempotency under redelivery, alert de-duplication, migrations, retention, forget."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from alert_service.store import LogQuery, LogRow, Sighting
from alert_service.store_factory import open_alert_store, open_result_log
from classifier_service.gallery.factory import open_gallery_store
from classifier_service.gallery.manager import GalleryManager
from classifier_service.gallery.operations import apply_command
from classifier_service.gallery.store import GalleryStore, NewEmbedding
from facewire.config import GallerySettings
from facewire.erasure import erasure_marker
from facewire.errors import ConfigError
from facewire.faces import FaceAnalyzer
from facewire.schema import Alert, Evidence, FaceResult
from facewire.schema.gallery import GalleryCommand
from facewire.storage.migrate import latest, migrate_sqlite, migrations
from facewire.storage.url import parse_database_url, postgres_conninfo, redact
from tests.alert_support import T0, face
from tests.pg_support import PostgresServer


def rows(count: int, node: str = "cam1", start: int = 0) -> list[LogRow]:
    names = ["unknown", "Tony_Blair", "Serena_Williams"]
    sent = [face(node, s, names[s % 3], 0.3 + (s % 5) * 0.1) for s in range(start, start + count)]
    return [LogRow.from_result(FaceResult.from_json(r.to_json())) for r in sent]  # as on the wire (rounded)


def test_rows_round_trip_and_every_log_filter(database_url: str) -> None:
    log = open_result_log(database_url)
    try:
        written = rows(30) + rows(30, "cam2")
        assert log.insert(written) == 60
        assert log.count() == 60
        everything = list(log.query(LogQuery(limit=0)))
        assert sorted(everything, key=lambda r: (r.node, r.seq)) == sorted(written, key=lambda r: (r.node, r.seq))
        assert [r.ts for r in everything] == sorted((r.ts for r in everything), reverse=True)
        tony = list(log.query(LogQuery(person="Tony_Blair", node="cam2", limit=0)))
        assert sorted(r.seq for r in tony) == [s for s in range(30) if s % 3 == 1]
        window = list(log.query(LogQuery(since=T0 + 10, until=T0 + 20, unknown_only=True, limit=3)))
        assert len(window) == 3 and all(not r.known and T0 + 10 <= r.ts < T0 + 20 for r in window)
        last = log.last_seen("Serena_Williams")
        assert last is not None and last.seq == 29
        assert log.last_seen("Nobody") is None
    finally:
        log.close()


def test_redelivered_rows_are_never_duplicated(database_url: str) -> None:
    first, second = open_result_log(database_url), open_result_log(database_url)  # two recorder replicas
    try:
        batch = rows(200)
        assert first.insert(batch[:120]) == 120
        assert second.insert(batch[60:]) == 80  # overlap of 60 redelivered rows
        assert first.insert(batch[::7]) == 0
        assert first.insert([]) == 0

        def replay(store: object, part: list[LogRow]) -> None:
            for _ in range(3):
                store.insert(part)  # type: ignore[attr-defined]

        threads = [threading.Thread(target=replay, args=(s, rows(300, "cam9"))) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert first.count() == 500 and second.count() == 500
    finally:
        first.close()
        second.close()


def test_the_newest_result_is_found_among_the_rows_written_last(database_url: str) -> None:
    """What a restarted recorder asks a replay from: batches mix their order, so it is the latest
    classification among the rows written last, not the last row's."""
    log = open_result_log(database_url)
    try:
        assert log.newest_decided_at() is None
        log.insert(rows(40, start=20))
        log.insert(rows(10))  # a late batch of older results
        assert log.newest_decided_at() == pytest.approx(T0 + 59 + 0.05)
    finally:
        log.close()


def test_retention_by_age_and_by_rows(database_url: str) -> None:
    log = open_result_log(database_url)
    try:
        log.insert(rows(100))
        assert log.enforce_retention(0, 0, T0 + 1000) == 0
        assert log.enforce_retention(1.0, 0, T0 + 86400 + 40) == 40  # rows before T0+40 are over a day old
        assert log.enforce_retention(0, 25, T0) == 35
        assert sorted(r.seq for r in log.query(LogQuery(limit=0))) == list(range(75, 100))
    finally:
        log.close()


def test_forget_erases_names_candidates_and_verdicts(database_url: str) -> None:
    log = open_result_log(database_url)
    marker = erasure_marker("Tony_Blair")
    try:
        log.insert(rows(30))
        log.confirm("cam1", 1, "Tony_Blair", T0)
        log.confirm("cam1", 2, None, T0)
        log.confirm("cam1", 2, "Serena_Williams", T0 + 1)  # a later verdict replaces the first, with a new id
        assert log.erase_person("Tony_Blair", marker) == 10
        assert log.erase_person("Tony_Blair", marker) == 0
        everything = list(log.query(LogQuery(limit=0)))
        assert not any(r.name == "Tony_Blair" or "Tony_Blair" in {c.name for c in r.candidates} for r in everything)
        assert len([r for r in everything if r.name == marker]) == 10
        verdicts = log.confirmations_after(0)
        assert [(c.seq, c.truth) for c in verdicts] == [(1, marker), (2, "Serena_Williams")]
        assert verdicts[0].row is not None and verdicts[0].row.name == marker
        assert [c.seq for c in log.confirmations_after(verdicts[0].id)] == [2]
    finally:
        log.close()


def alert(key: str, subject: str = "unknown", node: str = "cam1") -> Alert:
    evidence = (Evidence(node, 1, 0, subject, 0.3, T0), Evidence(node, 2, 0, subject, 0.31, T0 + 1))
    return Alert(key, "unknown", node, subject, f"{subject} seen on {node}", T0, T0 + 2, evidence)


def test_an_incident_is_raised_once_across_replicas(database_url: str) -> None:
    stores = [open_alert_store(database_url) for _ in range(2)]
    try:
        opened: list[bool] = []

        def race(store: object) -> None:
            with store.transaction():  # type: ignore[attr-defined]
                opened.append(store.open_incident(alert("unknown:cam1:1")))  # type: ignore[attr-defined]

        threads = [threading.Thread(target=race, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(opened) == [False, True]
        sighting = Sighting("unknown", "unknown", "cam1", 5, 0, "unknown", 0.2, T0 + 5)
        assert stores[0].add_sighting(sighting) and not stores[1].add_sighting(sighting)
        stores[1].extend_incident("unknown:cam1:1", T0 + 9)
        incident = stores[0].latest_incident("unknown", "unknown")
        assert incident is not None and (incident.count, incident.last_ts) == (3, T0 + 9)
        assert [a.id for a in stores[0].unpublished(T0 + 3)] == ["unknown:cam1:1"]
        stores[1].mark_published("unknown:cam1:1")
        assert stores[0].unpublished(T0 + 3) == []
        assert stores[0].acknowledge("unknown:cam1:1", "ops", T0 + 10)
        assert not stores[1].acknowledge("unknown:cam1:1", "ops", T0 + 11)
        listed = stores[1].alerts(10)
        assert len(listed) == 1 and listed[0].acked_by == "ops" and stores[1].alerts(10, unacked_only=True) == []
        assert stores[0].prune_sightings(T0 + 6) == 1
    finally:
        for store in stores:
            store.close()


def test_the_newest_sighting_is_what_a_restarted_alert_service_asks_from(database_url: str) -> None:
    store = open_alert_store(database_url)
    try:
        assert store.newest_sighting_ts() is None
        for seq, ts in ((1, T0 + 7), (2, T0 + 3)):  # the later one written first
            store.add_sighting(Sighting("unknown", "cam1", "cam1", seq, 0, "unknown", 0.2, ts))
        assert store.newest_sighting_ts() == pytest.approx(T0 + 7)
    finally:
        store.close()


def test_forget_erases_a_person_from_alerts_and_sightings(database_url: str) -> None:
    store = open_alert_store(database_url)
    marker = erasure_marker("Tony_Blair")
    try:
        store.open_incident(alert("watchlist:Tony_Blair:1", "Tony_Blair"))
        store.open_incident(alert("unknown:cam1:1"))
        store.add_sighting(Sighting("watchlist", "Tony_Blair", "cam1", 1, 0, "Tony_Blair", 0.8, T0))
        assert store.erase_person("Tony_Blair", marker) == 1
        assert store.erase_person("Tony_Blair", marker) == 0
        kept = {a.alert.id: a.alert for a in store.alerts(10)}
        assert set(kept) == {f"watchlist:{marker}:1", "unknown:cam1:1"}
        assert "Tony_Blair" not in kept[f"watchlist:{marker}:1"].to_json().decode()
        assert [s.name for s in store.sightings("watchlist", marker, 0, T0 + 1)] == [marker]
    finally:
        store.close()


def test_an_old_database_is_migrated_forward_on_start(database_url: str) -> None:
    """A v1 alert database (with an alert in it) opened by this version gains migration 2 and keeps its rows."""
    target = parse_database_url(database_url)
    if target.engine == "sqlite":
        assert target.path is not None
        db = sqlite3.connect(target.path)
        assert migrate_sqlite(db, "alerts", upto=1) == 1
        db.close()
    else:
        import psycopg

        from facewire.storage.migrate import migrate_postgres

        with psycopg.connect(target.url, autocommit=True) as conn:
            assert migrate_postgres(conn, "alerts", upto=1) == 1
    assert _indexes(database_url) & {"alerts_unpublished", "alerts_node_raised"} == set()
    store = open_alert_store(database_url)
    store.open_incident(alert("unknown:cam1:1"))
    store.close()
    store = open_alert_store(database_url)  # a second start applies nothing
    try:
        assert [a.alert.id for a in store.alerts(10, node="cam1")] == ["unknown:cam1:1"]
    finally:
        store.close()
    assert {"alerts_unpublished", "alerts_node_raised"} <= _indexes(database_url)
    assert _versions(database_url) == [("alerts", 1), ("alerts", 2)]


def _indexes(url: str) -> set[str]:
    target = parse_database_url(url)
    if target.engine == "sqlite":
        db = sqlite3.connect(str(target.path))
        found = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        db.close()
        return found
    import psycopg

    with psycopg.connect(target.url) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def _versions(url: str) -> list[tuple[str, int]]:
    target = parse_database_url(url)
    sql = "SELECT component, version FROM schema_version ORDER BY component, version"
    if target.engine == "sqlite":
        db = sqlite3.connect(str(target.path))
        found = [(r[0], r[1]) for r in db.execute(sql)]
        db.close()
        return found
    import psycopg

    with psycopg.connect(target.url) as conn:
        return [(r[0], r[1]) for r in conn.execute(sql)]


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    open_result_log(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES ('results', 99, 'future', 0)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="version 99"):
        open_result_log(path)


def test_a_pre_versioning_sqlite_database_adopts_migration_one(tmp_path: Path) -> None:
    """Files written before schema_version existed (CREATE TABLE IF NOT EXISTS) open with their rows."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for statement in migrations("sqlite", "results")[0].statements():
        db.execute(statement)
    db.commit()
    db.close()
    log = open_result_log(path)
    try:
        assert log.insert(rows(3)) == 3
    finally:
        log.close()
    assert _versions(f"sqlite:///{path}") == [("results", latest("results"))]


def test_both_engines_have_the_same_numbered_migrations() -> None:
    for component in ("results", "alerts", "gallery"):
        sqlite_side = [(m.version, m.name) for m in migrations("sqlite", component)]
        assert sqlite_side == [(m.version, m.name) for m in migrations("postgresql", component)]
        assert sqlite_side and sqlite_side[0] == (1, "initial")


def test_database_urls(tmp_path: Path) -> None:
    assert parse_database_url("sqlite:////var/lib/x.sqlite").path == Path("/var/lib/x.sqlite")
    assert parse_database_url("sqlite:///rel/x.sqlite").path == Path("rel/x.sqlite")
    assert parse_database_url(tmp_path).engine == "sqlite"
    assert parse_database_url("postgres://u:p@h/db").engine == "postgresql"
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    with pytest.raises(ConfigError, match="scheme"):
        parse_database_url("mysql://h/db")
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    conninfo = postgres_conninfo(f"postgresql://u@h/db?password_file={secret}&sslmode=disable")
    assert "password=s3cret" in conninfo and "password_file" not in conninfo and "sslmode=disable" in conninfo


def gallery(url: str, tmp_path: Path, replica: str = "r1") -> GalleryStore:
    return open_gallery_store(tmp_path / replica, "" if url.startswith("sqlite") else url, replica)


def test_gallery_store_rows_version_and_forget(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = gallery(database_url, tmp_path)
    own = database_url.startswith("sqlite")  # PostgreSQL: one gallery shared by the replicas, so another database
    other_url = database_url if own else request.getfixturevalue("postgres_server").create_database()
    other = gallery(other_url, tmp_path, "r2")
    rng = np.random.default_rng(3)
    items = [
        NewEmbedding(f"sha{i}", f"folder:Zoe/{i}.jpg", rng.standard_normal(8).astype(np.float32)) for i in range(3)
    ]
    try:
        assert store.created == other.created == own  # a new SQLite store asks its peers; a shared one never
        assert store.add_embeddings("Zoe", "m", items, T0) == [True, True, True]
        assert store.add_embeddings("Zoe", "m", items[:1], T0) == [False]
        assert store.add_embeddings("adam", "m", items[:1], T0) == [True]
        assert store.add_negative("Zoe", "m", items[2], T0) and not store.add_negative("Zoe", "m", items[2], T0)
        found = store.rows("m")
        assert found.people == ["Zoe", "Zoe", "Zoe", "adam"] and found.vectors is not None
        assert found.sources == ["sha0", "sha1", "sha2", "sha0"] and store.negatives("m").sources == ["sha2"]
        assert np.allclose(found.vectors[1], items[1].vector)
        assert store.people("m") == {"Zoe": 3, "adam": 1}
        assert other.rows("m").ids == [] and other.version("m") != store.version("m")
        other.add_embeddings("adam", "m", items[:1], T0)
        other.add_embeddings("Zoe", "m", items[::-1], T0)
        other.add_negative("Zoe", "m", items[2], T0)
        assert other.version("m") == store.version("m")  # same rows, same version, whatever the order
        store.add_rejection("m", "folder:Zoe/x.jpg", "shaX", "blurry")
        assert store.rejection("m", "folder:Zoe/x.jpg", "shaX") == "blurry"
        store.audit("enroll", "cli", "Zoe", {"added": 3}, T0)
        store.update_last_seen([("Zoe", "cam1", T0 + 5), ("Zoe", "cam2", T0 + 1)])
        assert store.last_seen("Zoe") == ("cam1", T0 + 5)
        store.add_unknowns("m", [("cam1", s, T0 + s, 1, items[0].vector) for s in range(5)] * 2)
        assert [u.seq for u in store.unknowns("m", cluster=1)] == [0, 1, 2, 3, 4]
        assert store.prune_unknowns(3, T0 + 1) == 2 and len(store.unknowns("m")) == 3
        counts = store.forget("Zoe")
        assert (counts.embeddings, counts.negatives, sorted(counts.sources)) == (3, 1, ["sha0", "sha1", "sha2"])
        assert store.people("m") == {"adam": 1} and store.last_seen("Zoe") is None
        assert store.rejection("m", "folder:Zoe/x.jpg", "shaX") is None and store.negatives("m").ids == []
        assert [e["subject"] for e in store.audit_events()] == [erasure_marker("Zoe")]
        assert store.tombstoned(["Zoe", "adam"]) == {"Zoe"} and other.tombstoned(["Zoe"]) == set()
    finally:
        store.close()
        other.close()
    reopened = gallery(database_url, tmp_path)
    try:
        assert not reopened.created and reopened.people("m") == {"adam": 1}
        assert reopened.tombstoned(["Zoe"]) == {"Zoe"}, "a tombstone outlives a restart"
        reopened.drop_tombstone("Zoe")
        assert reopened.tombstoned(["Zoe"]) == set()
    finally:
        reopened.close()


def engine_sql(url: str, store: GalleryStore, statement: str) -> None:
    """Run ``statement`` on the store's engine over a connection of its own."""
    if url.startswith("sqlite"):
        with sqlite3.connect(getattr(store, "path")) as conn:  # noqa: B009 - a SqliteGalleryStore
            conn.execute(statement)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement.encode())


def test_an_enrolment_is_one_transaction(database_url: str, tmp_path: Path) -> None:
    """The enrolment's rows and its audit row commit together: when the engine itself refuses the audit row
    (a trigger; the second statement), no embedding, person or change is left and nothing is served; without
    the trigger the same command goes through."""
    store = gallery(database_url, tmp_path)
    manager = GalleryManager(
        store, tmp_path / "r1", tmp_path / "photos", "m", GallerySettings(), _no_faces, 0.5, 5, "r1"
    )
    manager.restore()
    command = GalleryCommand("enroll", "e1", "test", "Zoe", embeddings=np.eye(3, 8, dtype=np.float32), model="m")
    sqlite = database_url.startswith("sqlite")
    if sqlite:
        engine_sql(
            database_url,
            store,
            "CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        )
    else:
        engine_sql(
            database_url,
            store,
            "CREATE FUNCTION gallery.refuse() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$;"
            " CREATE TRIGGER refuse BEFORE INSERT ON gallery.audit FOR EACH ROW EXECUTE FUNCTION gallery.refuse()",
        )
    try:
        with pytest.raises(Exception, match="audit refused"):
            apply_command(manager, command)
        assert store.rows("m").ids == [] and store.people("m") == {} and store.roster("m") == []
        assert manager.matcher.labels == [] and store.audit_events() == []
        if not sqlite:
            assert getattr(store, "changes")(0) == [], "no change logged"  # noqa: B009
        engine_sql(database_url, store, "DROP TRIGGER refuse" + ("" if sqlite else " ON gallery.audit"))
        (event,) = apply_command(manager, command).events
        assert event.event == "enrolled" and store.people("m") == {"Zoe": 3} and len(store.audit_events()) == 1
        assert manager.matcher.labels == ["Zoe"] * 3
    finally:
        store.close()


def _no_faces() -> FaceAnalyzer:
    raise AssertionError("vectors only")


def test_the_gallery_version_is_the_same_on_both_engines(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """A replica on SQLite and one on PostgreSQL holding the same rows agree on the gallery version."""
    url = postgres_server.create_database()
    stores = [open_gallery_store(tmp_path / "lite"), open_gallery_store(tmp_path / "pg", url, "pg")]
    vector = np.ones(8, dtype=np.float32)
    try:
        for store in stores:
            for person in ("adam", "Zoe", "Émile", "zoe"):
                store.add_embeddings(person, "m", [NewEmbedding(f"s-{person}", "cli", vector)], T0)
            store.add_negative("Zoe", "m", NewEmbedding("n1", "cli", vector), T0)
        assert stores[0].version("m") == stores[1].version("m")
        assert list(stores[0].people("m")) == list(stores[1].people("m"))
    finally:
        for store in stores:
            store.close()


def test_forget_leaves_no_copy_in_the_postgresql_table_files(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """After forget, neither the name nor the vector bytes are in any gallery table file (VACUUM FULL)."""
    import psycopg

    server = postgres_server
    url = server.create_database()
    store = open_gallery_store(tmp_path, url, "erase")
    vector = np.arange(8, dtype=np.float32) + 0.123
    try:
        store.add_embeddings(
            "Zelda_Fitzgerald", "m", [NewEmbedding("sha-z", "folder:Zelda_Fitzgerald/1.jpg", vector)], T0
        )
        store.add_embeddings("adam", "m", [NewEmbedding("sha-a", "cli", vector + 1)], T0)
        store.audit("enroll", "cli", "Zelda_Fitzgerald", {}, T0)
        store.update_last_seen([("Zelda_Fitzgerald", "cam1", T0)])
        store.forget("Zelda_Fitzgerald")
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        files = [
            conn.execute("SELECT pg_relation_filepath(%s)", (f"gallery.{table}",)).fetchone()
            for table in ("embeddings", "people", "last_seen", "audit", "rejections", "negatives", "changes")
        ]
    content = b"".join((server.root / "data" / row[0]).read_bytes() for row in files if row and row[0])
    assert b"adam" in content  # the files were found and hold the rows kept
    assert b"Zelda_Fitzgerald" not in content and vector.tobytes() not in content
