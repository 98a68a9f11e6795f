"""Gallery benchmark: enrol a large folder through a running classifier, time-to-searchable, restart.

    .venv/bin/python -m bench.bench_gallery [--known ../shared/data/lfw-dev/known] [--trials 20]

1. Starts mosquitto and one classifier on an empty gallery (store in a temporary folder).
2. Runs ``facewire enroll --by-folder KNOWN`` (checks + embeddings in the CLI, embeddings sent on
   gallery/cmd in chunks): photos/s, accepted/rejected counts.
3. Time to searchable: enrols one new embedding over MQTT and publishes a probe of the same
   person as soon as the event arrives (command -> event; command -> probe named), ``--trials`` times.
4. Restarts the classifier: start-up time with the index file, and the number of photos embedded (0).

Writes bench/results/gallery.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_json
from classifier_service.gallery.client import GalleryClient
from facewire.config import ModelSettings, MqttSettings
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire.schema.gallery import b64_vectors
from facewire_console.broker import LocalBroker
from harness.probes import Probes, probe
from harness.processes import ROOT, RunningClassifier, shared_data_dir


def enrol_folder(url: str, known: Path) -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "facewire_console",
            "enroll",
            "--by-folder",
            str(known),
            "--broker",
            url,
            "--timeout",
            "300",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(run.stdout[-2000:] + run.stderr[-2000:])
    summary = run.stdout.strip().splitlines()[-1]
    found = re.search(r"(\d+) photos: (\d+) enrolled, (\d+) rejected by checks, (\d+) rejected by the gallery", summary)
    assert found, summary
    photos, enrolled, rejected, duplicates = map(int, found.groups())
    return {
        "photos": photos,
        "enrolled": enrolled,
        "rejected_by_checks": rejected,
        "rejected_by_gallery": duplicates,
        "seconds": round(seconds, 1),
        "photos_per_s": round(photos / seconds, 1),
        "summary": summary,
    }


def time_to_searchable(url: str, people: list[Path], trials: int) -> dict[str, Any]:
    analyzer = create_analyzer(ModelSettings(), det_threshold=0.6, min_face=20)
    edge = Probes(url, node="bench")
    to_event, to_named = [], []
    with GalleryClient(MqttSettings(url=url), actor="bench") as client:
        for person_dir in people[:trials]:
            files = sorted(person_dir.iterdir())
            vector = analyzer.analyze(load_image(files[0]))
            if not vector:
                continue
            emb = max(vector, key=lambda f: f.size).embedding
            assert emb is not None
            name = "bench_" + person_dir.name
            started = time.perf_counter()
            event = client.request(
                {"op": "enroll", "person": name, "model": "sface-2021dec", "embeddings": b64_vectors(emb[None, :])}
            )[0]
            to_event.append(time.perf_counter() - started)
            result = edge.ask(np.asarray(probe(emb, "bench", 0).emb))
            to_named.append(time.perf_counter() - started)
            assert event["event"] == "enrolled" and result.name == name, (event, result)
    edge.stop()
    return {
        "trials": len(to_event),
        "command_to_event_ms_median": round(statistics.median(to_event) * 1000, 1),
        "command_to_event_ms_max": round(max(to_event) * 1000, 1),
        "command_to_named_probe_ms_median": round(statistics.median(to_named) * 1000, 1),
        "command_to_named_probe_ms_max": round(max(to_named) * 1000, 1),
    }


def main() -> None:
    data = shared_data_dir()
    parser = argparse.ArgumentParser()
    parser.add_argument("--known", type=Path, default=data / "lfw-dev" / "known" if data else None)
    parser.add_argument("--unknown", type=Path, default=data / "lfw-dev" / "unknown" if data else None)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "gallery").mkdir()
        broker = LocalBroker(work / "broker").start()
        classifier = RunningClassifier(broker.url, work / "gallery", work, instance="bench").start()
        try:
            enrolment = enrol_folder(broker.url, args.known)
            searchable = time_to_searchable(broker.url, sorted(args.unknown.iterdir()), args.trials)
            classifier.stop()
            started = time.perf_counter()
            classifier.start()
            restart_s = time.perf_counter() - started
            line = classifier.log.read_text().strip().splitlines()
            gallery_line = [x for x in line if x.startswith("gallery ")][-1]
        finally:
            classifier.stop()
            broker.stop()
    restart = {"seconds_to_ready": round(restart_s, 2), "log": gallery_line}
    path = write_json("gallery", {"enrolment": enrolment, "searchable": searchable, "restart": restart})
    print(f"wrote {path}")
    print("| measure | value |\n|---|---|")
    print(f"| enrol {enrolment['photos']} photos (checks + embed in the CLI) | {enrolment['photos_per_s']} photos/s |")
    print(
        f"| accepted / rejected by checks / by gallery | {enrolment['enrolled']} / "
        f"{enrolment['rejected_by_checks']} / {enrolment['rejected_by_gallery']} |"
    )
    print(
        f"| enrol command -> event (median / max of {searchable['trials']}) | "
        f"{searchable['command_to_event_ms_median']} / {searchable['command_to_event_ms_max']} ms |"
    )
    print(
        f"| enrol command -> next probe named (median / max) | "
        f"{searchable['command_to_named_probe_ms_median']} / {searchable['command_to_named_probe_ms_max']} ms |"
    )
    print(
        f"| restart with {enrolment['enrolled']} embeddings: process start to ready | {restart['seconds_to_ready']} s |"
    )
    print(f"\n{gallery_line}")


if __name__ == "__main__":
    main()
