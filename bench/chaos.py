"""Chaos run: real processes through a bounded mix of faults, then what was lost and what was duplicated.

    facewire bench chaos --minutes 2

A mosquitto (facewire_console.broker.LocalBroker), two classifier replicas in the shared-subscription group and an
``alert-service run recorder`` run as real processes. An edge's own spool and forwarder publish probe embeddings
of one node at a steady rate while the faults take turns: broker kill -9 and restart, a classifier replica
kill -9 and restart, the edge cut off from the broker (the broker stopped while the edge keeps producing: its
spool fills), malformed floods on the node's embeddings and results topics, and a slow subscriber on every
result (present all along, and a second one started mid-run). At the end the edge drains its spool and the
run waits, bounded, for every face to be recorded. Writes bench/results/chaos.json and the ``chaos`` section of
RELIABILITY.md.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine_line, output_dir, table, update_section, write_json
from facewire.config import MqttSettings
from facewire.errors import SchemaError
from facewire.mqtt import Message, MqttConnection
from facewire.schema import DeadLetter, FaceResult
from facewire_console.broker import LocalBroker
from harness.faults import SpooledPublisher, recorded, start_recorder
from harness.probes import probe
from harness.processes import SAMPLE, RunningClassifier

NODE = "cam-chaos"
DIM = 128  # sface-2021dec, the classifier's default model
FAULTS = ("malformed-flood", "broker-kill9", "slow-subscriber", "classifier-kill9", "edge-cut")
WARM_UP = 3.0  # seconds of steady traffic before the first fault
MAX_FAULTS = 200  # a bound on the loop besides its time
DRAIN_SECONDS = 180.0
RELIABILITY_MD = Path(__file__).resolve().parent.parent / "RELIABILITY.md"


class ResultTally:
    """A persistent-session subscriber of every result: deliveries per (node, seq), malformed ones counted apart.

    ``delay`` makes it a slow subscriber: it holds its network thread that long per message.
    """

    def __init__(self, url: str, client_id: str, delay: float = 0.0) -> None:
        self.delay = delay
        self.deliveries: Counter[tuple[str, int]] = Counter()
        self.malformed = 0
        self._lock = threading.Lock()
        self.connection = MqttConnection(MqttSettings(url=url), client_id, session_expiry=3600)
        self.connection.subscribe("facewire/results/+", self._on)
        self.connection.connect()

    def _on(self, message: Message) -> None:
        if self.delay:
            time.sleep(self.delay)
        try:
            key = FaceResult.from_json(bytes(message.payload)).key
        except SchemaError:
            with self._lock:
                self.malformed += 1
            return
        with self._lock:
            self.deliveries[key] += 1

    def snapshot(self) -> Counter[tuple[str, int]]:
        with self._lock:
            return Counter(self.deliveries)

    def close(self) -> None:
        self.connection.close()


class DeadLetters:
    """Counts dead letters per (service, reason) on facewire/deadletter/+."""

    def __init__(self, url: str) -> None:
        self.reasons: Counter[str] = Counter()
        self.connection = MqttConnection(MqttSettings(url=url), "chaos-deadletters", session_expiry=3600)
        self.connection.subscribe("facewire/deadletter/+", self._on)
        self.connection.connect()

    def _on(self, message: Message) -> None:
        try:
            letter = DeadLetter.from_json(bytes(message.payload))
            self.reasons[f"{letter.service}:{letter.reason}"] += 1
        except SchemaError:
            self.reasons["undecodable"] += 1

    def close(self) -> None:
        self.connection.close()


def malformed_payloads() -> list[bytes]:
    """Each bad class of issue 18 once: garbage bytes, deep nesting, huge integers, NaN, unicode digits."""
    rng = np.random.default_rng(18)
    return [
        bytes(rng.integers(0, 256, 64, dtype=np.uint8)),
        b"[" * 100_000,
        b'{"v": 1, "seq": ' + b"9" * 5000 + b"}",
        b'{"v": 1, "node": "cam-chaos", "seq": NaN}',
        '{"v": 1, "node": "cam-chaos", "seq": "١٢٣"}'.encode(),
        b"\x00" * 10,
        b"",
        b'{"v": 1e400}',
    ]


def gallery_of_sample(folder: Path) -> Path:
    """The bundled sample's known people, four photos each: what the classifiers enrol."""
    for person in sorted((SAMPLE / "lfw" / "known").iterdir()):
        (folder / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:4]:
            shutil.copy(photo, folder / person.name / photo.name)
    return folder


def replica(url: str, gallery: Path, workdir: Path, name: str) -> RunningClassifier:
    """A classifier replica with its own folder (log, gallery store), in the default shared-subscription group."""
    (workdir / name).mkdir(parents=True, exist_ok=True)
    return RunningClassifier(url, gallery, workdir / name, instance=name)


class Chaos:
    """The processes, the producer and the faults of one run."""

    def __init__(self, workdir: Path, rate: float) -> None:
        self.workdir, self.rate = workdir, rate
        self.broker = LocalBroker(workdir / "broker").start()
        self.results = ResultTally(self.broker.url, "chaos-results")
        self.slow = [ResultTally(self.broker.url, "chaos-slow-1", delay=0.05)]
        self.deadletters = DeadLetters(self.broker.url)
        gallery = gallery_of_sample(workdir / "gallery")
        self.classifiers = [replica(self.broker.url, gallery, workdir, name).start() for name in ("chaos-1", "chaos-2")]
        self.database = workdir / "results.sqlite"
        self.recorder = start_recorder(self.broker.url, self.database, workdir / "recorder.log", "chaos")
        self.publisher = SpooledPublisher(self.broker.url, workdir / "spool.sqlite", f"edge-{NODE}")
        self.captured = 0
        self.spool_peak = 0
        self.restarts: Counter[str] = Counter()
        self.unexpected_exits: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.flooded: Counter[str] = Counter()
        self.flood_unconfirmed = 0
        self._stop = threading.Event()
        self._producer = threading.Thread(target=self._produce, name="chaos-producer", daemon=True)
        self._producer.start()

    def _produce(self) -> None:
        rng = np.random.default_rng(11)
        topic = f"facewire/embeddings/{NODE}"
        while not self._stop.is_set():
            self.publisher.put(topic, probe(rng.standard_normal(DIM), NODE, self.captured).to_msgpack())
            self.captured += 1
            self.spool_peak = max(self.spool_peak, self.publisher.spool.depth)
            time.sleep(1.0 / self.rate)

    # --- faults -------------------------------------------------------------------------------------------------

    def broker_kill9(self) -> None:
        self.broker.kill()
        time.sleep(1.0)
        self.broker.start()
        self.restarts["broker"] += 1

    def classifier_kill9(self) -> None:
        replica = self.classifiers[self.faults["classifier-kill9"] % len(self.classifiers)]
        assert replica.process is not None
        replica.process.kill()
        replica.process.wait()
        time.sleep(1.0)
        replica.start()
        self.restarts["classifier"] += 1

    def edge_cut(self) -> None:
        """The edge loses the broker for 8 s (a stopped broker: no network namespace needed) and spools."""
        self.broker.stop()
        time.sleep(8.0)
        self.broker.start()
        self.restarts["broker"] += 1

    def malformed_flood(self) -> None:
        connection = MqttConnection(MqttSettings(url=self.broker.url), "chaos-flooder")
        connection.connect()
        for _ in range(25):
            for payload in malformed_payloads():
                for kind in ("embeddings", "results"):
                    connection.publish(f"facewire/{kind}/{NODE}", payload)
                    self.flooded[kind] += 1
        deadline = time.monotonic() + 30.0
        while connection.tracker.outstanding and time.monotonic() < deadline:
            time.sleep(0.05)  # every garbage message at the broker (PUBACK) before the flooder leaves
        self.flood_unconfirmed += connection.tracker.outstanding
        connection.close()

    def slow_subscriber(self) -> None:
        self.slow.append(ResultTally(self.broker.url, f"chaos-slow-{len(self.slow) + 1}", delay=0.2))

    def check_processes(self) -> None:
        """A process that died without a fault killing it is restarted and counted."""
        for replica in self.classifiers:
            if replica.process is not None and replica.process.poll() is not None:
                self.unexpected_exits[f"classifier {replica.instance}"] += 1
                replica.start()
        if self.recorder.poll() is not None:
            self.unexpected_exits["recorder"] += 1
            self.recorder = start_recorder(self.broker.url, self.database, self.workdir / "recorder.log", "chaos")

    def run_faults(self, seconds: float) -> None:
        actions: dict[str, Callable[[], None]] = {
            "broker-kill9": self.broker_kill9,
            "classifier-kill9": self.classifier_kill9,
            "edge-cut": self.edge_cut,
            "malformed-flood": self.malformed_flood,
            "slow-subscriber": self.slow_subscriber,
        }
        deadline = time.monotonic() + seconds
        time.sleep(min(WARM_UP, seconds))
        step = 0
        while time.monotonic() < deadline and step < MAX_FAULTS:
            name = FAULTS[step % len(FAULTS)]
            print(f"[{time.strftime('%H:%M:%S')}] fault {step + 1}: {name} ({self.captured} faces so far)", flush=True)
            actions[name]()
            self.faults[name] += 1
            step += 1
            time.sleep(min(4.0, max(0.0, deadline - time.monotonic())))
            self.check_processes()

    def drain(self) -> bool:
        """Stop producing, empty the spool, wait (bounded) until every face has a recorded row."""
        self._stop.set()
        self._producer.join()
        deadline = time.monotonic() + DRAIN_SECONDS
        self.publisher.wait_drained(DRAIN_SECONDS)
        while time.monotonic() < deadline:
            self.check_processes()
            if self.database.exists() and len(self.recorded_seqs()) >= self.captured:
                return True
            time.sleep(0.5)
        return False

    def wait_dead_letters(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until the classifiers and the recorder dead-lettered as much garbage as was flooded."""
        deadline = time.monotonic() + timeout
        expected = (self.flooded["embeddings"], self.flooded["results"])
        while time.monotonic() < deadline and not all(map(int.__ge__, self.dead_lettered(), expected)):
            time.sleep(0.5)

    def dead_lettered(self) -> tuple[int, int]:
        """Dead letters of (the classifiers, the recorder) so far."""
        reasons = dict(self.deadletters.reasons)
        by = Counter({service: 0 for service in ("classifier", "recorder")})
        for key, count in reasons.items():
            by[key.split(":", 1)[0]] += count
        return by["classifier"], by["recorder"]

    def recorded_seqs(self) -> Counter[int]:
        """Rows of the node in the recorder's log per seq (UNIQUE (node, seq) makes each 1, if it holds)."""
        with sqlite3.connect(self.database) as db:
            return Counter(int(seq) for (seq,) in db.execute("SELECT seq FROM results WHERE node = ?", (NODE,)))

    def close(self) -> None:
        self.publisher.close()
        for replica in self.classifiers:
            replica.stop()
        self.recorder.terminate()
        self.recorder.wait(30)
        for tally in (self.results, *self.slow):
            tally.close()
        self.deadletters.close()
        self.broker.stop()

    def figures(self, drained: bool, seconds: float) -> dict[str, Any]:
        seqs = self.recorded_seqs()
        rows, distinct = sum(seqs.values()), len(seqs)
        all_rows, all_distinct = recorded(self.database)
        captured = set(range(self.captured))
        delivered = self.results.snapshot()
        ours = {key: n for key, n in delivered.items() if key[0] == NODE and key[1] in captured}
        return {
            "seconds": round(seconds, 1),
            "drained_in_time": drained,
            "faces_captured": self.captured,
            "results_distinct": len(ours),
            "results_delivered": sum(ours.values()),
            "results_duplicates_delivered": sum(ours.values()) - len(ours),
            "results_missing": len(captured - {seq for _node, seq in ours}),
            "rows_recorded": rows,
            "rows_distinct": distinct,
            "rows_duplicated": rows - distinct,
            "rows_other_keys": all_rows - rows,
            "rows_distinct_all": all_distinct,
            "lost": len(captured - set(seqs)),
            "spool_peak": self.spool_peak,
            "spool_dropped": self.publisher.spool.dropped,
            "faults": dict(self.faults),
            "restarts_by_faults": dict(self.restarts),
            "unexpected_exits": dict(self.unexpected_exits),
            "malformed_results_seen": self.results.malformed,
            "deadletters": dict(self.deadletters.reasons),
            "flooded": dict(self.flooded),
            "flood_unconfirmed": self.flood_unconfirmed,
            "dead_lettered": dict(zip(("classifier", "recorder"), self.dead_lettered(), strict=True)),
            "slow_subscribers": [sum(t.snapshot().values()) for t in self.slow],
        }


def run(minutes: float, rate: float = 20.0, workdir: Path | None = None) -> dict[str, Any]:
    """One chaos run of ``minutes`` of faults (then the bounded drain); the figures."""
    folder = workdir or Path(tempfile.mkdtemp(prefix="facewire-chaos-"))
    started = time.monotonic()
    chaos = Chaos(folder, rate)
    try:
        chaos.run_faults(minutes * 60.0)
        drained = chaos.drain()
        chaos.wait_dead_letters()
        time.sleep(2.0)  # the slow subscribers' last messages
        data = chaos.figures(drained, time.monotonic() - started)
    finally:
        chaos.close()
    data.update(minutes=minutes, rate=rate, workdir=str(folder), edge_cut_by="stopped broker")
    return data


def publish(data: dict[str, Any], command: str) -> Path:
    """Print the figures; write bench/results/chaos.json and the ``chaos`` section of RELIABILITY.md."""
    write_json("chaos", {"command": command, **data})
    rows = [
        ("faces captured (edge published)", data["faces_captured"]),
        ("results (distinct faces answered)", data["results_distinct"]),
        ("results delivered (duplicates included)", data["results_delivered"]),
        ("duplicate results delivered", data["results_duplicates_delivered"]),
        ("rows recorded", data["rows_recorded"]),
        ("duplicated rows (duplicated effects)", data["rows_duplicated"]),
        ("lost (captured, never recorded)", data["lost"]),
        ("worker restarts by the faults", ", ".join(f"{k} {v}" for k, v in data["restarts_by_faults"].items())),
        ("unexpected process exits", sum(data["unexpected_exits"].values())),
        ("edge spool peak / dropped", f"{data['spool_peak']} / {data['spool_dropped']}"),
        ("faults injected", ", ".join(f"{k} {v}" for k, v in data["faults"].items())),
        (
            "malformed embeddings / results flooded (at the broker)",
            f"{data['flooded'].get('embeddings', 0)} / {data['flooded'].get('results', 0)}"
            f" ({data['flood_unconfirmed']} unconfirmed)",
        ),
        (
            "dead-lettered by the classifiers / the recorder",
            f"{data['dead_lettered']['classifier']} / {data['dead_lettered']['recorder']}",
        ),
        ("malformed results seen by a subscriber", data["malformed_results_seen"]),
        ("dead letters", ", ".join(f"{k} {v}" for k, v in sorted(data["deadletters"].items())) or "none"),
        ("slow subscribers received", ", ".join(str(n) for n in data["slow_subscribers"])),
    ]
    text = table(["figure", "value"], rows)
    print(text)
    body = "\n\n".join(
        [
            "### Chaos run (a benchmark, not a timed test)",
            machine_line(command),
            f"{data['minutes']} min of faults at {data['rate']} faces/s, then the edge's spool drained"
            f" ({data['seconds']} s in all). The edge cut off from the broker is a stopped broker.",
            text,
        ]
    )
    return update_section("chaos", body, (output_dir() or RELIABILITY_MD.parent) / RELIABILITY_MD.name)
