"""A photo library as people: `facewire scan --cluster/--recluster/--name-cluster/--every` and `facewire search`.

Real photos (data/sample/lfw: four people with six photos each, six strangers with one), real models,
real processes; naming a cluster enrols it on a real classifier through a real mosquitto.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from classifier_service.library_clusters import NOISE, bcubed_scores, pairwise_scores, recluster
from facewire.config import ModelSettings
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire_console.broker import LocalBroker
from harness.probes import Probes
from harness.processes import SAMPLE, RunningClassifier, run_module, start_module

KNOWN = SAMPLE / "lfw" / "known"
PEOPLE = sorted(p.name for p in KNOWN.iterdir())


def person_of(file: str) -> str:
    return Path(file).parent.name


def scan(library: Path, *args: str) -> dict[str, object]:
    done = run_module(
        "facewire_console", ["scan", str(library), "--gallery", str(KNOWN), "--workers", "1", "--json", *args], {}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample library less one photo of each known person (added later, for --recluster)."""
    root = tmp_path_factory.mktemp("library")
    shutil.copytree(SAMPLE / "lfw", root / "lfw")
    held = root / "held-back"
    for person in PEOPLE:
        last = sorted((root / "lfw" / "known" / person).iterdir())[-1]
        (held / person).mkdir(parents=True)
        last.rename(held / person / last.name)
    return root


def test_scores_of_a_clustering_match_a_hand_count() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]
    labels = [0, 0, 1, 1, 1, NOISE]
    pairwise = pairwise_scores(truth, labels)
    # pairs put together: (0,1) a-a, (2,3) a-b, (2,4) a-b, (3,4) b-b -> 2 right of 4; true pairs: 3 (a) + 1 (b)
    assert (pairwise.precision, pairwise.recall) == (0.5, 0.5)
    bcubed = bcubed_scores(truth, labels)
    # precision per face: 1, 1, 1/3, 2/3, 2/3, 1; recall per face: 2/3, 2/3, 1/3, 1, 1, 1
    assert bcubed.precision == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3 + 1) / 6)
    assert bcubed.recall == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1 + 1) / 6)


def test_recluster_keeps_earlier_clusters_and_folds_new_faces_in() -> None:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(3, 64))
    faces = [c + rng.normal(scale=0.05, size=64) for c in centres for _ in range(4)]
    vectors = np.stack([f / np.linalg.norm(f) for f in faces]).astype(np.float32)
    previous: list[int | None] = [7, 7, 7, None, 9, 9, 9, None, None, None, None, None]
    labels = recluster(vectors, previous, join_cosine=0.8)
    assert labels[:3].tolist() == [7, 7, 7] and labels[3] == 7  # the new face joins its person's cluster
    assert labels[4:8].tolist() == [9, 9, 9, 9]
    assert len(set(labels[8:].tolist())) == 1 and labels[8] not in (7, 9, NOISE)  # a new person, a new id


def test_scan_clusters_a_library_into_its_people(library: Path, tmp_path: Path) -> None:
    found = scan(library, "--cluster", "--out", str(tmp_path / "sheets"))
    clusters = found["clusters"]  # type: ignore[index]
    named = {c["person"]: c for c in clusters if c["person"]}
    assert set(named) == set(PEOPLE)  # every enrolled person has their cluster, named
    for person, cluster in named.items():
        members = Counter(person_of(f["file"]) for f in cluster["faces"])
        assert members[person] >= 4 and members[person] / sum(members.values()) >= 0.6, (person, members)
    assert all(set(f) == {"file", "bbox", "score"} for c in clusters for f in c["faces"])
    sheets = sorted(p.name for p in (tmp_path / "sheets").iterdir())
    assert sheets == sorted(f"cluster-{c['id']}.jpg" for c in clusters)


def test_recluster_folds_new_photos_into_the_clusters_found_before(library: Path) -> None:
    before = scan(library, "--cluster")
    ids_before = {c["person"]: c["id"] for c in before["clusters"] if c["person"]}  # type: ignore[index]
    shutil.copytree(library / "held-back", library / "lfw" / "added")
    after = scan(library, "--recluster")
    for cluster in after["clusters"]:  # type: ignore[index]
        if cluster["person"]:
            assert cluster["id"] == ids_before[cluster["person"]]  # the same ids as before
    where = {(f["file"], tuple(f["bbox"])): c["id"] for c in after["clusters"] for f in c["faces"]}  # type: ignore[index]
    for person in PEOPLE:  # the largest face of each added photo is its person (LFW photos show others behind)
        added = [key for key in where if f"/added/{person}/" in key[0]]
        subject = max(added, key=lambda key: key[1][2] * key[1][3])
        assert where[subject] == ids_before[person], person


def test_search_finds_the_library_photos_of_the_same_person(library: Path) -> None:
    scan(library)
    probe = sorted((library / "held-back" / "Serena_Williams").iterdir())[0]
    done = run_module("facewire_console", ["search", str(probe), "--library", str(library), "--top", "5", "--json"], {})
    assert done.returncode == 0, done.stderr[-3000:]
    matches = json.loads(done.stdout)["matches"]
    assert len(matches) == 5 and [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)
    assert [person_of(m["file"]) for m in matches[:4]] == ["Serena_Williams"] * 4


def test_scan_every_interval_picks_up_new_photos_until_stopped(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    (library / "a").mkdir(parents=True)
    first = sorted((KNOWN / "Tony_Blair").iterdir())
    shutil.copy(first[0], library / "a")
    args = ["scan", str(library), "--gallery", str(KNOWN), "--workers", "1", "--every", "1s"]
    process = start_module("facewire_console", args, {}, tmp_path / "every.log")
    report = library / ".facewire-scan.jsonl"
    try:
        assert _wait(lambda: report.exists() and len(report.read_text().splitlines()) == 1, 120)
        shutil.copy(first[1], library / "a")
        assert _wait(lambda: len(report.read_text().splitlines()) == 2, 60), (tmp_path / "every.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0, (tmp_path / "every.log").read_text()[-2000:]


@pytest.mark.slow
def test_naming_a_library_cluster_enrols_it_on_the_classifier(
    library: Path, broker: LocalBroker, tmp_path: Path
) -> None:
    found = scan(library, "--cluster")
    serena = [c for c in found["clusters"] if c["person"] == "Serena_Williams"]  # type: ignore[index]
    empty_gallery = tmp_path / "gallery"
    empty_gallery.mkdir()
    classifier = RunningClassifier(broker.url, empty_gallery, tmp_path).start()
    probes = Probes(broker.url)
    try:
        done = run_module(
            "facewire_console",
            ["scan", str(library), "--name-cluster", str(serena[0]["id"]), "Serena", "--broker", broker.url],
            {},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        analyzer = create_analyzer(ModelSettings(), det_threshold=0.6, min_face=20)
        probe = sorted((library / "held-back" / "Serena_Williams").iterdir())[0]
        face = max(analyzer.faces(load_image(probe)), key=lambda f: f.size)
        analyzer.embed([face])
        assert probes.ask(face.embedding).name == "Serena"
    finally:
        probes.stop()
        classifier.stop()


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False
