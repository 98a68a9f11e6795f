"""Classifier benchmark: search cost per index kind and embeddings/s through a real broker.

Synthetic galleries (5 photos per person around a random centre, same-person cosine ~0.6, like
real SFace embeddings) of 1k, 10k, 100k and (full run) 1M rows. Probes are new photos of
enrolled people. In process: flat vs HNSW vs IVF build time, ms per query alone and in batches
of 64, recall@1 against flat. Through one local mosquitto: facewire's classifier
(bench.servers mqtt) by gallery size and index, per-message (batch 1) vs batched (64), 1 vs 2
replicas on the shared subscription; baseline in the same run: the same payloads through the
broker to one subscriber, no classifier. The seed's way: bench.servers http, one POST per face.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench import metrics
from bench.common import Counter
from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire.schema import FaceEmbedding
from facewire_console.broker import LocalBroker

ROOT = Path(__file__).resolve().parent.parent
DIM = 128
PER_PERSON = 5
NODES = 4


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def synthetic_gallery(size: int, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(vectors, labels, person centres): ``size`` rows, PER_PERSON photos per person."""
    rng = np.random.default_rng(seed)
    people = max(1, size // PER_PERSON)
    centres = unit(rng.normal(size=(people, DIM)))
    owner = np.arange(size) % people
    vectors = unit(centres[owner] + rng.normal(scale=0.072, size=(size, DIM)))
    return vectors, [f"p{i}" for i in owner], centres


def probes(centres: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    owner = rng.integers(len(centres), size=count)
    return unit(centres[owner] + rng.normal(scale=0.072, size=(count, DIM)))


def build_index(kind: str, vectors: np.ndarray) -> faiss.Index:
    """A filled FAISS inner-product index: flat (exact), HNSW(32) or IVF (4·sqrt(N) lists, nprobe 8)."""
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(DIM)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
    else:
        nlist = max(16, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[: max(nlist * 40, 10_000)])
        index.nprobe = 8
    index.add(vectors)
    if kind == "hnsw":
        index.hnsw.efSearch = 64
    return index


def search_costs(index: faiss.Index, queries: np.ndarray, exact: np.ndarray | None) -> dict[str, Any]:
    """ms per query searched alone and in batches of 64, and the top-1 ids (recall vs ``exact``)."""
    singles = queries[: max(20, min(200, int(2e7 / max(index.ntotal, 1))))]
    start = time.perf_counter()
    for row in singles:
        index.search(row[None, :], 5)
    single_ms = 1000 * (time.perf_counter() - start) / len(singles)
    start = time.perf_counter()
    ids = np.concatenate([index.search(queries[i : i + 64], 5)[1] for i in range(0, len(queries), 64)])
    batched_ms = 1000 * (time.perf_counter() - start) / len(queries)
    return {
        "single_ms": single_ms,
        "batched_ms": batched_ms,
        "ids": ids,
        "recall_at_1": 1.0 if exact is None else metrics.recall_at_1(ids, exact),
    }


@contextmanager
def server(kind: str, args: dict[str, Any]) -> Iterator[int]:
    """A bench.servers process, ready; yields its port (0 for mqtt)."""
    with served(kind, args) as (port, _process):
        yield port


@contextmanager
def served(kind: str, args: dict[str, Any]) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A bench.servers process, ready; yields its port (0 for mqtt) and the process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", kind, json.dumps(args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    if not line.startswith("ready"):
        process.kill()
        raise RuntimeError(f"bench.servers {kind} did not start")
    try:
        yield int(line.split()[1]), process
    finally:
        process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def payloads(vectors: np.ndarray, first_seq: int = 0) -> list[tuple[str, bytes]]:
    """(topic, FaceEmbedding msgpack) for each probe, spread over NODES nodes, numbered from ``first_seq``."""
    items = []
    for i, vector in enumerate(vectors):
        node = f"bench-{i % NODES}"
        message = FaceEmbedding(
            node, first_seq + i, time.time(), i, 1, (0, 0, 80, 80), 0.9, {"size": 80.0}, "sface-2021dec", vector
        )
        items.append((f"facewire/embeddings/{node}", message.to_msgpack()))
    return items


def pump(
    url: str, items: list[tuple[str, bytes]], counter_topic: str, topic: str | None = None, bulk_reads: bool = True
) -> float:
    """Publish every item at QoS 1; messages/s until all arrive on ``counter_topic`` (``bulk_reads``: the
    publisher and the counter read their sockets in bulk, else with paho's own reader)."""
    counter = Counter(url, counter_topic, len(items), bulk_reads)
    counter.connection.connect()
    time.sleep(0.3)
    publisher = MqttConnection(MqttSettings(url=url, bulk_reads=bulk_reads), f"bench-pump-{id(items)}")
    publisher.connect()
    start = time.perf_counter()
    for item_topic, payload in items:
        publisher.publish(topic or item_topic, payload)
    counter.done.wait(600)
    rate = counter.count / max(counter.last - start, 1e-9)
    publisher.close()
    counter.connection.close()
    return rate if counter.count == len(items) else rate * counter.count / len(items)


def http_rate(port: int, vectors: np.ndarray, clients: int = 4) -> float:
    """Requests/s of ``clients`` threads, each POSTing one embedding per new connection (the seed's client)."""

    def post(rows: np.ndarray) -> None:
        for row in rows:
            connection = HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request(
                "POST", "/classify", json.dumps({"embedding": row.tolist()}), {"Content-Type": "application/json"}
            )
            connection.getresponse().read()
            connection.close()

    threads = [threading.Thread(target=post, args=(part,)) for part in np.array_split(vectors, clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(vectors) / (time.perf_counter() - start)


def index_costs(size: int, queries: np.ndarray, folder: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Build flat, HNSW and IVF over a ``size`` gallery; their costs and the files the servers load."""
    vectors, labels, _ = synthetic_gallery(size)
    files = {"npy": str(folder / f"gallery-{size}.npy"), "labels": str(folder / f"labels-{size}.txt")}
    np.save(files["npy"], vectors)
    Path(files["labels"]).write_text("\n".join(labels))
    rows, exact = [], None
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    for kind in ("flat", "hnsw", "ivf"):
        start = time.perf_counter()
        index = build_index(kind, vectors)
        built = time.perf_counter() - start
        cost = search_costs(index, queries, exact)
        if kind == "flat":
            exact = cost["ids"]
        else:
            files[kind] = str(folder / f"{kind}-{size}.faiss")
            faiss.write_index(index, files[kind])
        del index
        rows.append({"size": size, "index": kind, "omp_threads": 1, "build_s": built,
                     **{k: v for k, v in cost.items() if k != "ids"}})  # fmt: skip
    faiss.omp_set_num_threads(threads)
    cost = search_costs(build_index("flat", vectors), queries, exact)
    rows.append({"size": size, "index": "flat", "omp_threads": threads, "build_s": 0.0,
                 **{k: v for k, v in cost.items() if k != "ids"}})  # fmt: skip
    return rows, files


def through_broker(url: str, files: dict[str, str], items: list[tuple[str, bytes]], **how: Any) -> dict[str, Any]:
    """Results/s of ``replicas`` facewire classifiers with ``index`` and ``batch_max``."""
    index, batch, replicas = how.get("index", "flat"), how.get("batch_max", 64), how.get("replicas", 1)
    omp = how.get("omp", 0)
    args = {"npy": files["npy"], "labels": files["labels"], "url": url, "batch_max": batch, "omp_threads": omp}
    if index != "flat":
        args["index"] = files[index]
    with ExitStack() as stack:
        for replica in range(replicas):
            stack.enter_context(server("mqtt", {**args, "instance": f"bench-{replica}"}))
        rate = pump(url, items, "facewire/results/+")
    return {
        "index": index,
        "batch_max": batch,
        "replicas": replicas,
        "omp_threads": omp or "default",
        "results_per_s": rate,
    }


def messages_for(size: int, count: int) -> int:
    """Fewer probes for galleries over 100k (a flat 1M search is ~100x a 10k one), at least 500."""
    return count if size <= 100_000 else max(500, count * 100_000 // size)


def run(quick: bool, sizes: list[int] | None = None, messages: int | None = None) -> dict[str, Any]:
    """Index costs, broker runs and the seed's HTTP way; the dict written to bench/results/classifier.json."""
    sizes = sizes or ([1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000])
    count = messages or (3_000 if quick else 10_000)
    mid, big = (10_000 if 10_000 in sizes else sizes[0]), sizes[-1]
    index_rows, broker_rows, http_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        files, items = {}, {}
        for size in sizes:
            _, _, centres = synthetic_gallery(size)
            rows, files[size] = index_costs(size, probes(centres, 1_000), Path(tmp))
            index_rows += rows
            items[size] = payloads(probes(centres, messages_for(size, count), seed=2))
        baseline = pump(broker.url, items[mid], "facewire/bench/raw", topic="facewire/bench/raw")
        plan: list[tuple[int, dict[str, Any]]] = [(size, {}) for size in sizes]
        plan += [(big, {"index": "hnsw"}), (big, {"index": "ivf"})]
        plan += [(mid, {"batch_max": 1}), (mid, {"replicas": 2})]
        plan += [(mid, {"omp": 1}), (mid, {"batch_max": 1, "omp": 1}), (mid, {"replicas": 2, "omp": 1})]
        for size, how in plan:
            row = {"size": size, **through_broker(broker.url, files[size], items[size], **how)}
            broker_rows.append({**row, "ratio_to_broker_only": row["results_per_s"] / baseline})
        for size in sorted({mid, big}):
            vectors = probes(synthetic_gallery(size)[2], messages_for(size, count), seed=2)
            http_args = {"npy": files[size]["npy"], "labels": files[size]["labels"], "omp_threads": 1}
            with server("http", http_args) as port:
                rate = http_rate(port, vectors)
            same = max(
                (r for r in broker_rows if r["size"] == size and r["index"] == "flat" and r["replicas"] == 1),
                key=lambda r: r["results_per_s"],
            )
            http_rows.append(
                {"size": size, "requests_per_s": rate, "facewire_per_s": same["results_per_s"],
                 "ratio_facewire_to_http": same["results_per_s"] / rate}
            )  # fmt: skip
    return {
        "messages": count,
        "dim": DIM,
        "broker_only_per_s": baseline,
        "index": index_rows,
        "broker": broker_rows,
        "seed_http": http_rows,
    }
