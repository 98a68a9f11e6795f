"""`facewire people`: enrolled people with photo counts, when enrolled and where and when last seen (issue 24.4)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from facewire.config import ModelSettings
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire_console.broker import LocalBroker
from harness.probes import Probes
from harness.processes import SAMPLE, RunningClassifier, run_module

KNOWN = SAMPLE / "lfw" / "known"


def people_json(args: list[str], env: dict[str, str]) -> list[dict[str, object]]:
    done = run_module("facewire_console", ["people", "--json", *args], env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["people"]  # type: ignore[no-any-return]


def test_people_lists_counts_enrolment_and_last_sighting(broker: LocalBroker, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    for person in ("Colin_Powell", "Serena_Williams"):
        shutil.copytree(KNOWN / person, gallery / person)
    started = time.time()
    classifier = RunningClassifier(broker.url, gallery, tmp_path).start()
    probes = Probes(broker.url, node="front-door")
    try:
        analyzer = create_analyzer(ModelSettings(), det_threshold=0.6, min_face=20)
        photo = sorted((KNOWN / "Serena_Williams").iterdir())[0]
        face = max(analyzer.faces(load_image(photo)), key=lambda f: f.size)
        analyzer.embed([face])
        assert probes.ask(face.embedding).name == "Serena_Williams"
        listed = people_json(["--broker", broker.url], {})
    finally:
        probes.stop()
        classifier.stop()
    by_name = {entry["person"]: entry for entry in listed}
    assert set(by_name) == {"Colin_Powell", "Serena_Williams"}
    assert 4 <= by_name["Serena_Williams"]["photos"] <= 6  # type: ignore[operator]
    assert started - 5 <= by_name["Colin_Powell"]["enrolled"] <= time.time()  # type: ignore[operator]
    assert by_name["Colin_Powell"]["last_seen"] is None
    seen = by_name["Serena_Williams"]["last_seen"]
    assert seen["node"] == "front-door" and seen["at"] >= started  # type: ignore[index]
    # the same store, read directly
    offline = people_json(
        ["--offline", "--instance", classifier.instance], {"FACEWIRE_GALLERY__STORE_DIR": str(classifier.store_dir)}
    )
    assert [e["person"] for e in offline] == ["Colin_Powell", "Serena_Williams"]
