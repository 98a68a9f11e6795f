"""The seed's pipeline end to end: edge-agent (Haar + Face Mesh + exported CLIP) -> mosquitto -> classifier."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from facewire.models.mediapipe_faces import mediapipe_available
from facewire.models.metadata import read_metadata
from facewire.schema import FaceResult
from facewire_console.broker import LocalBroker
from harness.processes import Collector, RunningClassifier, run_module
from tests.model_support import export_random, need_torch, tiny_clip

__all__ = ["tiny_clip"]  # a fixture
PER_PERSON = 2


def gallery_and_probes(sample_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Gallery: 2 photos per known person; probes: copies of those same photos (a self-match checks the plumbing)."""
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    probes.mkdir()
    for person in sorted((sample_dir / "lfw/known").iterdir()):
        (gallery / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:PER_PERSON]:
            shutil.copy(photo, gallery / person.name / photo.name)
            shutil.copy(photo, probes / f"{person.name}__{photo.name}")
    return gallery, probes


def largest_per_frame(results: list[FaceResult]) -> dict[int, FaceResult]:
    chosen: dict[int, FaceResult] = {}
    for result in results:
        current = chosen.get(result.frame)
        if current is None or result.bbox[2] * result.bbox[3] > current.bbox[2] * current.bbox[3]:
            chosen[result.frame] = result
    return chosen


def run_seed_pipeline(
    broker: LocalBroker, model: Path, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edge and classifier on the same exported model, Haar detector and (when installed) the Face Mesh mask."""
    mask = "facemesh" if mediapipe_available() else "none"
    options = ["--model", str(model), "--detector", "haar", "--mask", mask]
    model_id = read_metadata(model).model_id
    gallery, probes = gallery_and_probes(sample_dir, tmp_path)
    env = {
        "FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state"),
        "FACEWIRE_MODEL__CACHE_DIR": str(tmp_path / "cache"),
        # LFW faces sit at the same place in every photo, so the tracker chains them into one track, and
        # random-weight embeddings of different faces are ~0.99 alike: without this, dedup keeps only one.
        "FACEWIRE_EDGE__DEDUP_COSINE": "1.0",
        # and the classifier would refuse every photo after the first as a duplicate enrolment. Its other
        # enrolment checks (a second face, blur) are relaxed too: every gallery photo is enrolled and matches its copy.
        "FACEWIRE_GALLERY__DUPLICATE_COSINE": "1.0",
        "FACEWIRE_GALLERY__SECOND_FACE_RATIO": "1.0",
        "FACEWIRE_GALLERY__MIN_SHARPNESS": "0",
        "FACEWIRE_GALLERY__STORE_DIR": str(tmp_path / "gallery-store"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the classifier process inherits them
    watch = Collector(broker.url, ["facewire/results/+", "facewire/deadletter/#"]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, extra=options).start()
    try:
        edge = run_module(
            "edge_agent",
            ["run", "--node-id", "seed-cam", "--source", str(probes), "--once", "--broker", broker.url, *options],
            env,
        )
        assert edge.returncode == 0, edge.stderr
        published = int(re.search(r"(\d+) published", edge.stderr).group(1))  # type: ignore[union-attr]
        received = watch.wait_for(lambda t: t.startswith("facewire/results/"), published, timeout=60)
        default_edge = run_module(
            "edge_agent",
            [
                "run",
                "--node-id",
                "sface-cam",
                "--source",
                str(sample_dir / "lfw/unknown/Adam_Mair"),
                "--once",
                "--broker",
                broker.url,
            ],
            env,
        )
        assert default_edge.returncode == 0, default_edge.stderr
        letters = watch.wait_for(lambda t: "deadletter" in t, 1, timeout=30)
    finally:
        assert classifier.stop() == 0
        watch.stop()
    results = [FaceResult.from_json(payload) for _topic, payload in received]
    assert len(results) == published >= 4 * PER_PERSON
    assert {r.model for r in results} == {model_id}
    files = sorted(p.name for p in probes.iterdir())
    chosen = largest_per_frame(results)
    assert set(chosen) == set(range(len(files)))
    for frame, name in enumerate(files):
        assert chosen[frame].name == name.split("__")[0], (name, chosen[frame])
        # an exact copy of an enrolled photo: its person's centroid is the closest of all (random weights
        # put every face near every other, so only the order is meaningful)
        assert chosen[frame].known and chosen[frame].candidates[0].name == chosen[frame].name
        assert all(chosen[frame].score > c.score for c in chosen[frame].candidates[1:])
    reasons = [json.loads(payload) for _topic, payload in letters]
    assert reasons and {r["reason"] for r in reasons} == {"model-mismatch"}, reasons
    assert "sface-2021dec" in reasons[0]["detail"] and model_id in reasons[0]["detail"]


def test_seed_pipeline_with_tiny_random_clip(
    broker: LocalBroker, tiny_clip: Path, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_seed_pipeline(broker, tiny_clip, sample_dir, tmp_path, monkeypatch)


@pytest.mark.slow
def test_seed_pipeline_with_random_vit_b32_clip(
    broker: LocalBroker, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact ViT-B/32 architecture (random weights): export, parity, sizes, then the same pipeline."""
    need_torch()
    model = export_random(tmp_path / "export", "vit-b32")
    meta = read_metadata(model)
    assert meta.embedding_dim == 512 and meta.input_size == 224
    assert model.stat().st_size > 300e6 and model.with_suffix(".int8.onnx").stat().st_size < 100e6
    run_seed_pipeline(broker, model, sample_dir, tmp_path, monkeypatch)
