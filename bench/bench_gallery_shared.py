"""The shared gallery in PostgreSQL: time to served by every replica, and following versus reloading.

    .venv/bin/python -m bench.bench_gallery_shared [--trials 20] [--rows 20000 ...] [--json]

1. Starts a throwaway PostgreSQL, mosquitto and three classifier replicas sharing one gallery. Each trial
   enrols one embedding over MQTT and times, from the send: the applying replica's ``enrolled`` event and
   the last ``served`` event of the other two (event timestamps; one machine, one clock). Baseline in the
   same run: a ``status`` command answered by all three (the same broker and replicas, nothing changed).
2. In one process, for each of ``--rows``: a gallery of that many rows (128-d, 10 rows a person) served by a
   follower; times applying one new row through the change log (incremental) against a new replica loading
   the whole gallery (snapshot of every row, index built; no index file). FAISS runs on one OpenMP thread,
   as the classifier does (``classifier.faiss_threads``). ``--trials 0`` runs only this part.

Writes bench/results/gallery_shared.json and prints a Markdown table (``--json``: the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psycopg
from rich.progress import track

from bench.common import write_json
from classifier_service.gallery.client import GalleryClient
from classifier_service.gallery.factory import open_gallery_store
from classifier_service.gallery.manager import GalleryManager
from classifier_service.gallery.store import NewEmbedding, vector_source
from facewire.config import GallerySettings, MqttSettings
from facewire.faces import FaceAnalyzer
from facewire.schema.gallery import b64_vectors
from facewire_console.broker import LocalBroker
from harness.postgres import PostgresServer, postgres_bindir
from harness.processes import SAMPLE, RunningClassifier

REPLICAS = ("a", "b", "c")


def unit(rng: np.random.Generator, count: int, dim: int = 128) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[max(0, round(0.95 * len(ordered)) - 1)] * 1000, 1),
    }


def time_to_served(url: str, broker: LocalBroker, trials: int) -> dict[str, Any]:
    rng = np.random.default_rng(21)
    with psycopg.connect(url) as conn:
        model = conn.execute("SELECT model FROM gallery.embeddings LIMIT 1").fetchone()
    applied, served, status = [], [], []
    with GalleryClient(MqttSettings(url=broker.url), actor="bench") as client:
        for trial in track(range(trials), description="enrol -> served by 3"):
            sent = time.time()
            request = client.send({"op": "status"})
            answers = client.wait(request, "status", len(REPLICAS), 30)
            status.append(max(e["ts"] for e in answers) - sent)
            body = {"op": "enroll", "person": f"bench_{trial}", "embeddings": b64_vectors(unit(rng, 1))}
            sent = time.time()
            request = client.send(body | {"model": model[0] if model else ""})
            (enrolled,) = client.wait(request, "enroll", 1, 30)
            deadline = time.monotonic() + 30
            while len(others := [e for e in client.events(request) if e["event"] == "served"]) < len(REPLICAS) - 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"served by {len(others)} of {len(REPLICAS) - 1}")
                time.sleep(0.005)
            applied.append(enrolled["ts"] - sent)
            served.append(max([enrolled["ts"], *(e["ts"] for e in others)]) - sent)
    return {
        "trials": trials,
        "applied_by_one": ms(applied),
        "served_by_all": ms(served),
        "status_round_trip_baseline": ms(status),
    }


def no_analyzer() -> FaceAnalyzer:
    raise AssertionError("vectors only")


def replica(url: str, folder: Path, name: str) -> GalleryManager:
    """A replica serving the shared gallery (loaded now: snapshot of every row, index built)."""
    store = open_gallery_store(folder, url, name)
    manager = GalleryManager(store, folder, folder, "m", GallerySettings(), no_analyzer, 0.5, 5, name)
    manager.restore()
    return manager


def follow_versus_reload(url: str, work: Path, rows: int) -> dict[str, Any]:
    writer = replica(url, work / f"writer{rows}", "writer")
    rng = np.random.default_rng(5)
    for start in track(range(0, rows, 10), description=f"fill {rows} rows"):
        vectors = unit(rng, min(10, rows - start))
        items = [NewEmbedding(vector_source(v), "bench", v) for v in vectors]
        writer.store.add_embeddings(f"p{start}", "m", items, time.time())
    follower = replica(url, work / f"follower{rows}", "follower")
    follower.flush()
    incremental, reload = [], []
    for trial in range(5):
        vector = unit(rng, 1)[0]
        writer.store.add_embeddings(f"new{trial}", "m", [NewEmbedding(vector_source(vector), "b", vector)], 0.0)
        started = time.perf_counter()
        follower.follow()
        incremental.append(time.perf_counter() - started)
        follower.flush()  # its index file now, not by the saver thread during the next timing
        started = time.perf_counter()
        joined = replica(url, work / f"joined{rows}-{trial}", f"joined{trial}")  # a new replica: the whole gallery
        reload.append(time.perf_counter() - started)
        assert joined.matcher.labels == follower.matcher.labels
        joined.flush()
        joined.store.close()
    for manager in (writer, follower):
        manager.flush()
        manager.store.close()
    return {"rows": rows, "follow_one_row": ms(incremental), "reload_all": ms(reload)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql)")
    faiss.omp_set_num_threads(1)  # as the classifier (classifier.faiss_threads)
    server = PostgresServer(bindir).start()
    served: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.trials:
            served = served_by_three(server, work, args.trials)
        following = [follow_versus_reload(server.create_database(), work, rows) for rows in args.rows]
    server.stop()
    results = {"time_to_served": served, "follow": following}
    path = write_json("gallery_shared", results)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"wrote {path}")
    if served:
        base = served["status_round_trip_baseline"]
        print("| measure (median / p95) | ms | ÷ status round trip (median) |\n|---|---|---|")
        rows = [
            ("enrol -> applied by one replica", served["applied_by_one"]),
            ("enrol -> served by all 3", served["served_by_all"]),
        ]
        for label, found in [*rows, ("status command answered by all 3 (baseline)", base)]:
            ratio = found["median_ms"] / base["median_ms"]
            print(f"| {label} | {found['median_ms']} / {found['p95_ms']} | {ratio:.2f} |")
    print("\n| rows | follow one new row, ms (median / p95) | a new replica loads the gallery, ms | ratio |")
    print("|---|---|---|---|")
    for found in following:
        inc, full = found["follow_one_row"], found["reload_all"]
        cells = [
            f"{found['rows']:,}",
            f"{inc['median_ms']} / {inc['p95_ms']}",
            f"{full['median_ms']} / {full['p95_ms']}",
        ]
        print(f"| {' | '.join(cells)} | {inc['median_ms'] / full['median_ms']:.3f} |")


def served_by_three(server: PostgresServer, work: Path, trials: int) -> dict[str, Any]:
    """Part 1: three classifier processes on one mosquitto and one shared gallery."""
    gallery = work / "gallery" / "Colin_Powell"
    gallery.mkdir(parents=True)
    photo = sorted((SAMPLE / "lfw" / "known" / "Colin_Powell").glob("*.jpg"))[0]
    (gallery / photo.name).write_bytes(photo.read_bytes())
    broker = LocalBroker(work / "broker").start()
    url = server.create_database()
    env = {"FACEWIRE_GALLERY__DATABASE_URL": url}
    replicas = []
    try:
        for name in REPLICAS:
            (work / name).mkdir()
            replicas.append(RunningClassifier(broker.url, gallery.parent, work / name, name, env=env).start())
        return time_to_served(url, broker, trials)
    finally:
        for replica in replicas:
            replica.stop()
        broker.stop()


if __name__ == "__main__":
    main()
