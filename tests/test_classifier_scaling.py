"""`docker compose up --scale classifier=3`, without a Docker daemon: three replicas started the way compose
starts them, with one environment, one shared store volume and no instance id, each in its own UTS
namespace (its own host name, as a container has). Each must keep its own gallery store, apply an
enrolment and answer its share of the embeddings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire_console.broker import LocalBroker
from harness.probes import Probes
from harness.processes import ROOT, SAMPLE, Collector, run_module, status_online

pytestmark = pytest.mark.slow
REPLICAS = ["classifier-1", "classifier-2", "classifier-3"]
PERSON = "Lin_Manuel_Miranda"


def can_unshare() -> bool:
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture
def scaled(broker: LocalBroker, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, Collector]]:
    """Three classifier replicas like compose's: same environment and volumes, a host name each."""
    if not can_unshare():
        pytest.skip("unshare --uts is not permitted here (needs root or user namespaces)")
    gallery, state, cache = tmp_path / "gallery", tmp_path / "classifier-state", tmp_path / "cache"
    gallery.mkdir()
    env = {  # docker-compose.yml's classifier service, with its volumes under tmp_path
        "FACEWIRE_MQTT__URL": broker.url,
        "FACEWIRE_CLASSIFIER__GALLERY": str(gallery),
        "FACEWIRE_MODEL__CACHE_DIR": str(cache),
        "XDG_STATE_HOME": str(state.parent),
        "XDG_CACHE_HOME": str(cache.parent),
        "FACEWIRE_GALLERY__STORE_DIR": str(state / "gallery"),
    }
    statuses = Collector(broker.url, ["facewire/services/classifier/+/status"]).start()
    processes = []
    for name in REPLICAS:
        command = f"hostname {name} && exec {sys.executable} -m classifier_service run"
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    ["unshare", "--uts", "sh", "-c", command],
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
    try:
        deadline = time.monotonic() + 180
        while len(online(statuses)) < len(REPLICAS) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), logs(tmp_path)
            time.sleep(0.2)
        assert len(online(statuses)) == len(REPLICAS), logs(tmp_path)
        yield env, state / "gallery", statuses
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        statuses.stop()


def online(statuses: Collector) -> dict[str, dict[str, object]]:
    """The latest status of each replica that is online."""
    latest: dict[str, dict[str, object]] = {}
    for _topic, payload in statuses.matching(lambda t: True):
        status = json.loads(payload)
        latest[str(status["instance"])] = status
    return {name: status for name, status in latest.items() if status_online(json.dumps(status).encode())}


def logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(folder.glob("classifier-*.log")))


def test_three_scaled_replicas_keep_their_own_stores_and_all_answer(
    scaled: tuple[dict[str, str], Path, Collector], broker: LocalBroker, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    env, stores, statuses = scaled
    # each replica opened its own store, named after its host name, on the shared volume
    assert sorted(p.name for p in stores.iterdir()) == REPLICAS
    assert all((stores / name / "gallery.sqlite").is_file() for name in REPLICAS)
    photo = SAMPLE / "enroll" / PERSON / "lin-manuel-miranda.png"
    enrolled = run_module("facewire_console", ["enroll", PERSON, str(photo), "--replicas", "3"], env)
    assert enrolled.returncode == 0, enrolled.stderr + logs(tmp_path)
    # every replica names the person: the shared subscription hands each its share of the probes
    vector = analyzer.analyze(load_image(photo))[0].embedding
    assert vector is not None
    probes = Probes(broker.url, node="door")
    try:
        results = [probes.ask(vector) for _ in range(30)]
    finally:
        probes.stop()
    assert {r.name for r in results} == {PERSON}
    deadline = time.monotonic() + 30  # the next heartbeats carry each replica's result count
    while time.monotonic() < deadline:
        answered = {name: s["results"] for name, s in online(statuses).items() if int(str(s["results"])) > 0}
        if len(answered) == len(REPLICAS):
            break
        time.sleep(0.5)
    assert len(answered) == len(REPLICAS), online(statuses)
    assert all(s["people"] == 1 for s in online(statuses).values())
