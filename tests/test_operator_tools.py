"""Operator tools on real photos and the real clip: identify, extract, scan."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire_console.broker import LocalBroker
from harness.processes import Collector, RunningClassifier, run_module
from tests.test_spine_integration import split_sample


def group_photo(sample_dir: Path, out: Path) -> Path:
    """Three real LFW photos side by side: two enrolled people and a stranger."""
    parts = [
        "lfw/known/Colin_Powell/Colin_Powell_0011.jpg",
        "lfw/unknown/Jessica_Simpson/Jessica_Simpson_0001.jpg",
        "lfw/known/Tony_Blair/Tony_Blair_0011.jpg",
    ]
    cv2.imwrite(str(out), np.hstack([load_image(sample_dir / p) for p in parts]))
    return out


def facewire(args: list[str], tmp_path: Path) -> tuple[int, str, str]:
    run = run_module("facewire_console", args, {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    return run.returncode, run.stdout, run.stderr


@pytest.fixture
def gallery(sample_dir: Path, tmp_path: Path) -> Path:
    return split_sample(sample_dir, tmp_path)[0]


def test_identify_names_enrolled_people_in_a_group_photo_and_marks_a_stranger(
    sample_dir: Path, tmp_path: Path, gallery: Path
) -> None:
    photo = group_photo(sample_dir, tmp_path / "group.jpg")
    code, out, err = facewire(["identify", str(photo), "--gallery", str(gallery), "--json"], tmp_path)
    assert code == 0, err
    faces = json.loads(out)[0]["faces"]
    # the main face of each 250-pixel-wide part (LFW photos also show people in the background)
    big = [
        max(
            (f for f in faces if part * 250 <= f["bbox"][0] + f["bbox"][2] / 2 < (part + 1) * 250),
            key=lambda f: f["bbox"][2],
        )
        for part in range(3)
    ]
    assert [f["name"] for f in big] == ["Colin_Powell", "unknown", "Tony_Blair"]
    assert big[0]["known"] and not big[1]["known"] and big[0]["candidates"][0]["name"] == "Colin_Powell"


def test_identify_on_the_shared_obama_biden_photos(shared_data: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    for name in ("obama", "biden"):
        (gallery / name).mkdir(parents=True)
        shutil.copy(shared_data / "images" / f"{name}.jpg", gallery / name)
    code, out, err = facewire(
        ["identify", str(shared_data / "images/two_people.jpg"), "--gallery", str(gallery), "--json"], tmp_path
    )
    assert code == 0, err
    assert sorted(f["name"] for f in json.loads(out)[0]["faces"]) == ["biden", "obama"]


def test_extract_gives_one_folder_per_person_with_only_their_crops(
    analyzer: FaceAnalyzer, sample_dir: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "faces"
    code, _out, err = facewire(["extract", str(sample_dir / "short_hamilton_clip.mp4"), str(out_dir)], tmp_path)
    assert code == 0, err
    lin = analyzer.analyze(load_image(next((sample_dir / "enroll/Lin_Manuel_Miranda").iterdir())))[0].embedding
    assert lin is not None
    scores: dict[str, list[float]] = {}
    for folder in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        crops = sorted(folder.glob("frame_*.jpg"))
        assert 1 <= len(crops) <= 5
        embeddings = analyzer.embedder.embed([load_image(c) for c in crops])
        scores[folder.name] = [float(e @ lin) for e in embeddings]
    lin_folders = [name for name, values in scores.items() if max(values) >= 0.45]
    assert len(lin_folders) == 1, scores
    assert min(scores[lin_folders[0]]) >= 0.4, "every crop in Lin's folder is Lin"
    index = json.loads((out_dir / "index.json").read_text())
    assert {entry["folder"] for entry in index} == set(scores)


def test_scan_matches_identify_resumes_and_dry_runs(sample_dir: Path, tmp_path: Path, gallery: Path) -> None:
    library = tmp_path / "library"
    shutil.copytree(sample_dir / "lfw/unknown", library / "strangers")
    group_photo(sample_dir, library / "group.jpg")
    (library / "broken.jpg").write_bytes(b"garbage")
    shutil.copy(sample_dir / "short_hamilton_clip.mp4", library / "clip.mp4")
    report = tmp_path / "scan.jsonl"
    args = ["scan", str(library), "--gallery", str(gallery), "--report", str(report), "--csv", str(tmp_path / "s.csv")]
    code, out, err = facewire([*args, "--workers", "2"], tmp_path)
    assert code == 0, err
    lines = {Path(line["file"]).name: line for line in map(json.loads, report.read_text().splitlines())}
    assert len(lines) == 9 and "error" in lines["broken.jpg"]
    clip_faces = lines["clip.mp4"]["faces"]
    assert any(f["name"] == "unknown" for f in clip_faces) and len({f["frame"] for f in clip_faces}) >= 8
    code, identified, err = facewire(
        ["identify", str(library / "group.jpg"), "--gallery", str(gallery), "--json"], tmp_path
    )
    assert json.loads(identified)[0]["faces"] == lines["group.jpg"]["faces"]
    assert "Colin_Powell" in out and "Tony_Blair" in out
    code, out, err = facewire([*args, "--dry-run"], tmp_path)
    assert code == 0 and "0 photos to scan (9 already" in err
    assert (tmp_path / "s.csv").read_text().count("\n") >= 10


def test_identify_reads_the_gallery_store_when_no_folder_is_given(
    sample_dir: Path, tmp_path: Path, gallery: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEWIRE_GALLERY__STORE_DIR", str(tmp_path / "store"))
    photo = group_photo(sample_dir, tmp_path / "group.jpg")
    code, _out, err = facewire(["identify", str(photo), "--json"], tmp_path)
    assert code == 2 and "store" in err and "empty" in err
    code, _out, err = facewire(["enroll", "--offline", "Colin_Powell", str(gallery / "Colin_Powell")], tmp_path)
    assert code == 0, err
    code, out, err = facewire(["identify", str(photo), "--json"], tmp_path)
    assert code == 0, err
    names = {f["name"] for f in json.loads(out)[0]["faces"]}
    assert "Colin_Powell" in names and "Tony_Blair" not in names


def test_camera_enrolment_from_a_video_gives_feedback_and_enrols(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEWIRE_GALLERY__STORE_DIR", str(tmp_path / "store"))
    clip = sample_dir / "short_hamilton_clip.mp4"
    code, out, err = facewire(["enroll", "--offline", "Someone", "--camera", str(clip), "--frames", "3"], tmp_path)
    assert code == 0, err
    assert "kept 3/3" in err and "Someone: 3 frames enrolled" in out
    refusals = ("more than one face", "no face found", "not varied enough", "too small", "too blurred")
    assert any(reason in err for reason in refusals), "refused frames are explained"
    code, out, err = facewire(
        ["enroll", "--offline", "Nobody", "--camera", str(clip), "--frames", "3", "--max-frames", "2"], tmp_path
    )
    assert code == 1 and "good frames" in err


def test_identify_over_mqtt_request_response(
    broker: LocalBroker, sample_dir: Path, tmp_path: Path, gallery: Path
) -> None:
    photo = group_photo(sample_dir, tmp_path / "group.jpg")
    letters = Collector(broker.url, ["facewire/deadletter/identify"]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path).start()
    try:
        code, out, err = facewire(["identify", "--remote", "--broker", broker.url, "--json", str(photo)], tmp_path)
        subprocess.run(  # a request with nowhere to answer is dead-lettered, not dropped silently
            ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", "facewire/identify/req", "-m", "{}"], check=True
        )
        letter = letters.wait_for(lambda t: True, 1, timeout=20)
    finally:
        classifier.stop()
        letters.stop()
    assert code == 0, err
    names = {f["name"] for f in json.loads(out)[0]["faces"]}
    assert {"Colin_Powell", "Tony_Blair", "unknown"} <= names
    assert json.loads(letter[0][1])["reason"] == "no-response-topic"
    code, _out, err = facewire(["identify", "--remote", "--broker", broker.url, "--timeout", "2", str(photo)], tmp_path)
    assert code == 1 and "no classifier answered" in err
