"""End to end through a real mosquitto: edge-agent process -> classifier process -> results."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from facewire.schema import FaceResult
from facewire_console.broker import LocalBroker
from harness.processes import ROOT, Collector, RunningClassifier, run_module
from tests.test_schema import embedding

ENROLLED_PER_PERSON = 4


def split_sample(sample_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Gallery of 4 photos per known person; probes: their other photos plus unknown people."""
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    probes.mkdir()
    for person_dir in sorted((sample_dir / "lfw/known").iterdir()):
        photos = sorted(person_dir.iterdir())
        (gallery / person_dir.name).mkdir(parents=True)
        for photo in photos[:ENROLLED_PER_PERSON]:
            shutil.copy(photo, gallery / person_dir.name / photo.name)
        for photo in photos[ENROLLED_PER_PERSON:]:
            shutil.copy(photo, probes / f"{person_dir.name}__{photo.name}")
    for person_dir in sorted((sample_dir / "lfw/unknown").iterdir()):
        for photo in person_dir.iterdir():
            shutil.copy(photo, probes / f"unknown__{photo.name}")
    return gallery, probes


def published_count(stderr: str) -> int:
    found = re.search(r"(\d+) published", stderr)
    assert found, stderr
    return int(found.group(1))


def test_edge_to_classifier_names_known_and_rejects_unknown(
    broker: LocalBroker, sample_dir: Path, tmp_path: Path
) -> None:
    gallery, probes = split_sample(sample_dir, tmp_path)
    results = Collector(broker.url, ["facewire/results/+", "facewire/deadletter/#"]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path).start()
    try:
        edge = run_module(
            "edge_agent",
            ["run", "--node-id", "cam-1", "--source", str(probes), "--once", "--broker", broker.url],
            {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state")},
        )
        assert edge.returncode == 0, edge.stderr
        expected = published_count(edge.stderr)
        received = results.wait_for(lambda t: t.startswith("facewire/results/"), expected, timeout=60)
    finally:
        assert classifier.stop() == 0
        results.stop()
    decoded = [FaceResult.from_json(payload) for _topic, payload in received]
    assert len(decoded) == expected >= 14
    assert sorted(r.seq for r in decoded) == sorted({r.seq for r in decoded}), "every seq answered exactly once"
    assert not results.matching(lambda t: t.startswith("facewire/deadletter"))
    files = sorted(p.name for p in probes.iterdir())
    by_frame: dict[int, FaceResult] = {}
    for result in decoded:
        current = by_frame.get(result.frame)
        if current is None or result.bbox[2] * result.bbox[3] > current.bbox[2] * current.bbox[3]:
            by_frame[result.frame] = result
    assert set(by_frame) == set(range(len(files)))
    for frame, name in enumerate(files):
        wanted = name.split("__")[0]
        assert by_frame[frame].name == wanted, (name, by_frame[frame])
        assert by_frame[frame].node == "cam-1" and by_frame[frame].model == "sface-2021dec"


def test_malformed_messages_are_dead_lettered_and_service_keeps_answering(
    broker: LocalBroker, sample_dir: Path, tmp_path: Path
) -> None:
    gallery, _probes = split_sample(sample_dir, tmp_path)
    watch = Collector(broker.url, ["facewire/results/+", "facewire/deadletter/classifier"]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path).start()
    try:
        port = str(broker.port)
        for payload in (b"not msgpack at all", b"\x93\x01\x02\x03"):  # garbage; a msgpack list, not a map
            subprocess.run(
                ["mosquitto_pub", "-p", port, "-q", "1", "-t", "facewire/embeddings/cam-2", "-s"],
                input=payload,
                check=True,
            )
        good = embedding(node="cam-2", seq=5)
        subprocess.run(
            ["mosquitto_pub", "-p", port, "-q", "1", "-t", "facewire/embeddings/cam-2", "-s"],
            input=good.to_msgpack(),
            check=True,
        )
        wrong_node = embedding(node="cam-9", seq=6)
        subprocess.run(
            ["mosquitto_pub", "-p", port, "-q", "1", "-t", "facewire/embeddings/cam-2", "-s"],
            input=wrong_node.to_msgpack(),
            check=True,
        )
        letters = watch.wait_for(lambda t: "deadletter" in t, 3, timeout=20)
        answers = watch.wait_for(lambda t: "results" in t, 1, timeout=20)
    finally:
        assert classifier.stop() == 0
        watch.stop()
    reasons = sorted(json.loads(p)["reason"] for _t, p in letters)
    assert reasons == ["node-mismatch", "not-msgpack", "wrong-type"]
    assert [FaceResult.from_json(p).key for _t, p in answers] == [("cam-2", 5)]


def test_bad_broker_url_and_unreachable_broker_fail_with_a_message(tmp_path: Path, sample_dir: Path) -> None:
    run = run_module(
        "edge_agent",
        [
            "run",
            "--node-id",
            "x",
            "--source",
            str(sample_dir / "lfw/unknown"),
            "--once",
            "--broker",
            "mqtt://127.0.0.1:1",
        ],
        {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path)},
    )
    assert run.returncode == 1 and "cannot reach broker" in run.stderr and "Traceback" not in run.stderr
    run = run_module("edge_agent", ["run", "--node-id", "bad/id", "--once"], {})
    assert run.returncode == 2 and "node id" in run.stderr


@pytest.mark.slow
def test_demo_recognises_lin_manuel_miranda_in_the_clip() -> None:
    demo = subprocess.run(
        [str(Path(shutil.which("facewire") or ROOT / ".venv/bin/facewire")), "demo"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Lin_Manuel_Miranda" in demo.stdout
    seen = re.search(r"seen: (.*)", demo.stdout)
    assert seen and "Lin_Manuel_Miranda x" in seen.group(1)
