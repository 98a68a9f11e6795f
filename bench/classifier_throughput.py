"""Classifier throughput beside the broker alone, in alternating rounds, and where the time goes (issue 21).

The setting of the classifier benchmark's "10,000 / flat / batch 64 / 1 OpenMP thread" row: a synthetic
10k gallery, one classifier process (bench.servers mqtt) kept running, payloads from 4 nodes at QoS 1.
Each round sends the same payloads (a) from a Python publisher through the broker to one Python
subscriber, no classifier (the baseline), then (b) through the classifier to a subscriber of the results.
A round's ratio (b)/(a) is measured within seconds on a shared, noisy machine; the median is reported.
Each round is run with two load generators: one with paho's own socket reader (``mqtt.bulk_reads =
false``: the Python publisher and subscriber the issue measured) and one with facewire's bulk reader (the
default, 3x cheaper per message). The classifier always runs its default.
Beside the rates: CPU seconds per message of the classifier process, of the load generator (publisher
and subscriber, this process) and of mosquitto, which other load on the machine disturbs less.

``--profile``: py-spy samples the classifier during ``PROFILED`` more passes; the samples are put in buckets (FAISS,
JSON, msgpack, paho's read loop, ...) by the innermost frame that names one, and counted by thread (paho's
network thread, the classifier's worker). ``--gil``: only samples of the thread holding the GIL (what one
Python process can do at a time), instead of every thread not idle (which counts threads waiting for it).

    python -m bench.classifier_throughput [--rounds 3] [--messages 10000] [--profile [--gil]] [--json]
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np

from bench.classifier import payloads, probes, pump, served, synthetic_gallery
from bench.common import machine_line, table, update_section, write_json
from facewire.progress import progress_bar
from facewire_console.broker import LocalBroker

SIZE = 10_000
# The load generator's MQTT client: paho's own socket reader (the baseline), or facewire's bulk reader.
LOAD_GENERATORS = {"paho reader": False, "bulk reader": True}
PROFILED = 4  # passes sampled by --profile (py-spy at 100 Hz: a few hundred samples)
RAW_TOPIC = "facewire/bench/raw"
# (bucket, substrings of a frame); a sample goes to the bucket of its innermost frame that matches.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("FAISS search (GIL released)", ("IndexFlat.search", "replacement_search")),
    ("matcher: per-probe decision in Python", ("Matcher._decide", "Matcher.match")),
    ("JSON encoding of results", ("to_json", "result_json", "to_dict")),
    ("msgpack decoding and checks of embeddings", ("from_msgpack", "decode (classifier_service")),
    ("core: checks, de-duplication, FaceResult", ("Classifier.classify", "decide (classifier_service")),
    ("ack of each embedding (PUBACK out)", ("MqttConnection.ack", "_acker")),
    ("result publish (into paho)", ("MqttConnection.publish", "MqttConnection._send")),
    ("hand-off: fair queue put/take", ("FairQueue.put", "FairQueue.take", "ClassifierService._on_message")),
    ("MQTT: PUBACKs of results in (in-flight window)", ("_handle_pubackcomp", "BulkClient._puback_packet")),
    ("MQTT: embeddings in (decode, route to handler)", ("_handle_publish", "BulkClient._publish_packet")),
    ("MQTT: socket reads/writes and select loop", ("loop_read", "loop_write", "_packet_read", "Client._loop")),
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(rate_of: Callable[[], float], pids: dict[str, int], count: int) -> dict[str, float]:
    """Messages/s of ``rate_of()`` and CPU ms per message of each process in ``pids`` and of this one."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = own_cpu_seconds()
    rate = rate_of()
    row = {f"{name}_cpu_ms": 1000 * (cpu_seconds(pid) - before[name]) / count for name, pid in pids.items()}
    return {"per_s": rate, "load_generator_cpu_ms": 1000 * (own_cpu_seconds() - own) / count, **row}


THREADS = [("paho network thread", "Client._thread_main"), ("classifier worker", "ClassifierService._work")]


def bucketed(raw: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Share of py-spy samples per bucket and per thread (raw format: ``frame;...;frame count`` per line)."""
    counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, samples = line.rsplit(" ", 1)
        counts[bucket_of(stack.split(";")[1:])] += int(samples)
        threads[next((name for name, frame in THREADS if frame in stack), "other")] += int(samples)
    total = sum(counts.values()) or 1
    names = [name for name, _ in [*BUCKETS, ("other", ())]]
    return {name: counts[name] / total for name in names}, {
        name: threads[name] / total for name in [*(name for name, _ in THREADS), "other"]
    }


def bucket_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in BUCKETS:
            if any(key in frame for key in keys):
                return name
    return "other"


def profiled(
    pid: int, run: Callable[[], object], folder: Path, gil: bool = False
) -> tuple[dict[str, float], dict[str, float]]:
    """Bucket and thread shares of py-spy samples of process ``pid`` while ``run()`` runs (``gil``: only
    samples of the thread holding the GIL)."""
    spy = shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if spy is None:
        raise click.ClickException("--profile needs py-spy (pip install py-spy)")
    raw = folder / "py-spy.txt"
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "-o", str(raw)]
        + (["--gil"] if gil else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    run()
    recorder.send_signal(2)
    recorder.wait(60)
    return bucketed(raw)


def pinned(cpus: dict[int, list[int]]) -> None:
    """Bind every thread of each process to its CPU (``{cpu: [pid, ...]}``)."""
    for cpu, pids in cpus.items():
        for pid in pids:
            for thread in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(thread.name), {cpu})


def run(rounds: int, count: int, profile: bool, pin: bool = False, gil: bool = False) -> dict[str, Any]:
    """Alternating broker-only and classifier rounds; the dict written to bench/results/classifier_throughput.json.

    ``pin``: the classifier on CPU 1, mosquitto and the load generator on CPU 0 (in both kinds of round), as
    when the classifier has a machine of its own.
    """
    vectors, labels, centres = synthetic_gallery(SIZE)
    vectors_in = probes(centres, count, seed=2)
    # fresh (node, seq) keys per pass: repeats are answered from memory
    passes = iter(range(len(LOAD_GENERATORS) * rounds + PROFILED))

    def fresh() -> list[tuple[str, bytes]]:
        return payloads(vectors_in, first_seq=count * next(passes))

    rows: list[dict[str, Any]] = []
    shares: dict[str, float] = {}
    threads: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        np.save(Path(tmp) / "gallery.npy", vectors)
        (Path(tmp) / "labels.txt").write_text("\n".join(labels))
        args = {"npy": str(Path(tmp) / "gallery.npy"), "labels": str(Path(tmp) / "labels.txt"), "url": broker.url,
                "batch_max": 64, "omp_threads": 1, "instance": "throughput"}  # fmt: skip
        assert broker.process is not None
        with served("mqtt", args) as (_port, classifier), progress_bar("classifier throughput") as update:
            pids = {"classifier": classifier.pid, "broker": broker.process.pid}
            if pin:
                pinned({0: [os.getpid(), broker.process.pid], 1: [classifier.pid]})
            for done in range(rounds):
                for client, bulk in LOAD_GENERATORS.items():
                    items = fresh()
                    raw = partial(pump, broker.url, items, RAW_TOPIC, topic=RAW_TOPIC, bulk_reads=bulk)
                    base = measured(raw, pids, count)
                    through = measured(
                        partial(pump, broker.url, items, "facewire/results/+", bulk_reads=bulk), pids, count
                    )
                    ratio = through["per_s"] / base["per_s"]
                    rows.append({"load_generator": client, "broker_only": base, "classifier": through, "ratio": ratio})
                update(done + 1, rounds)
            if profile:
                passes_profiled = [partial(pump, broker.url, fresh(), "facewire/results/+") for _ in range(PROFILED)]
                shares, threads = profiled(classifier.pid, lambda: [p() for p in passes_profiled], Path(tmp), gil)
    return {
        "gallery": SIZE,
        "pinned": pin,
        "messages": count,
        "rounds": rows,
        "median_ratio": {
            client: statistics.median(row["ratio"] for row in rows if row["load_generator"] == client)
            for client in LOAD_GENERATORS
        },
        "profile": shares,
        "profile_threads": threads,
        "profile_gil": gil,
    }


def publish(data: dict[str, Any], command: str) -> None:
    """bench/results/classifier_throughput.json and the ``classifier-throughput`` section of BENCHMARKS.md."""
    write_json("classifier_throughput", data)
    per_round = len(LOAD_GENERATORS)
    rounds = [
        [i // per_round + 1, r["load_generator"], f"{r['broker_only']['per_s']:,.0f}",
         f"{r['classifier']['per_s']:,.0f}", f"{r['ratio']:.2f}", f"{r['classifier']['classifier_cpu_ms']:.3f}",
         f"{r['classifier']['load_generator_cpu_ms']:.3f}", f"{r['broker_only']['load_generator_cpu_ms']:.3f}"]
        for i, r in enumerate(data["rounds"])
    ]  # fmt: skip
    header = ["round", "load generator", "broker only msg/s", "classifier results/s", "ratio", "classifier CPU ms/msg",
              "load generator CPU ms/msg (with classifier)", "load generator CPU ms/msg (broker only)"]  # fmt: skip
    body = (
        f"{machine_line(command)}\n\n{data['gallery']:,}-row flat gallery (1 OpenMP thread, batch max 64), "
        f"{data['messages']:,} embeddings from 4 nodes per pass, QoS 1 in and out, one classifier kept running; "
        "each round: the broker alone (Python publisher → Python subscriber), then the classifier, once with a "
        "load generator on paho's own socket reader (`mqtt.bulk_reads = false`) and once on facewire's bulk reader "
        "(the default); the classifier runs its default (bulk reader)."
        + (" Pinned: the classifier on CPU 1, mosquitto and the load generator on CPU 0." if data["pinned"] else "")
        + "\n\n"
        + table(header, rounds)
        + "\n\nMedian ratio: "
        + ", ".join(f"**{ratio:.2f}** with the {client}" for client, ratio in data["median_ratio"].items())
        + "."
    )
    if data["profile"]:
        shares = sorted(data["profile"].items(), key=lambda item: -item[1])
        which = "of the thread holding the GIL" if data.get("profile_gil") else "of every thread not idle"
        body += f"\n\npy-spy samples ({which}) of the classifier process during {PROFILED} more passes (load generator "
        body += "on the bulk reader), by where they fall:\n\n"
        body += table(["where", "share of samples"], [[name, f"{share:.1%}"] for name, share in shares])
        threads = ", ".join(f"{name} {share:.0%}" for name, share in data.get("profile_threads", {}).items())
        body += f"\n\nBy thread: {threads}."
    update_section("classifier-throughput" + ("-pinned" if data["pinned"] else ""), body)


@click.command()
@click.option("--rounds", type=int, default=3, show_default=True, help="Broker-only + classifier pairs.")
@click.option("--messages", type=int, default=10_000, show_default=True, help="Embeddings per pass.")
@click.option("--profile", is_flag=True, help="Sample the classifier with py-spy during 4 more passes.")
@click.option("--gil", is_flag=True, help="With --profile: sample only the thread holding the GIL.")
@click.option("--pin", is_flag=True, help="Classifier on CPU 1; broker and load generator on CPU 0.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def main(rounds: int, messages: int, profile: bool, gil: bool, pin: bool, as_json: bool) -> None:
    """Classifier results/s ÷ broker-only messages/s, round by round, and the classifier's profile."""
    data = run(rounds, messages, profile, pin, gil)
    options = f" --rounds {rounds} --messages {messages}" + (" --profile" if profile else "")
    options += (" --gil" if profile and gil else "") + (" --pin" if pin else "")
    publish(data, "python -m bench.classifier_throughput" + options)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        ratios = ", ".join(f"{ratio:.2f} ({client})" for client, ratio in data["median_ratio"].items())
        click.echo(f"median ratio {ratios} over {rounds} rounds")


if __name__ == "__main__":
    main()
