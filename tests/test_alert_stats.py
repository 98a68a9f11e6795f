"""Threshold statistics on the lfw-dev gallery: the recommended threshold holds its FAR on unseen unknown people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alert_service.sqlite_log import SqliteResultLog
from alert_service.store import LogRow
from facewire.config import ModelSettings
from facewire.faces import FaceAnalyzer
from facewire.gallery_folder import EmbeddingCache, build_gallery, cached_embedding
from facewire.models.registry import sha256_file
from facewire.schema.stats import ThresholdReport
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import Collector, run_module, start_module
from tests.alert_support import face, log_tail, publish_all, results_payloads, wait_for_online

PEOPLE = 60
PHOTOS_EACH = 10
TARGET_FAR = 1e-3


def subset_gallery(known: Path, into: Path) -> Path:
    """Every other lfw-dev/known person (60 people), their first 10 photos, as symlinks."""
    people = sorted(p for p in known.iterdir() if p.is_dir())[::2][:PEOPLE]
    for person in people:
        (into / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:PHOTOS_EACH]:
            (into / person.name / photo.name).symlink_to(photo)
    return into


def embed_folder(root: Path, analyzer: FaceAnalyzer, cache: EmbeddingCache) -> np.ndarray:
    vectors = []
    for path in sorted(root.rglob("*.jpg")):
        vector, _reason = cached_embedding(cache, analyzer, path, sha256_file(path))
        if vector is not None:
            vectors.append(vector)
    return np.stack(vectors)


@pytest.mark.slow
def test_recommended_threshold_holds_its_far_on_unknown_people(
    broker: LocalBroker, tmp_path: Path, shared_data: Path, analyzer: FaceAnalyzer
) -> None:
    gallery_dir = subset_gallery(shared_data / "lfw-dev" / "known", tmp_path / "gallery")
    collector = Collector(broker.url, [Topics().stats_thresholds()]).start()
    # an operator has confirmed that one recorded result was a stranger
    database = tmp_path / "results.sqlite"
    SqliteResultLog(database).insert([LogRow.from_result(face("cam1", 7, "Tony_Blair", 0.47))])
    confirmed = run_module(
        "facewire_console", ["stats", "confirm", "cam1", "7", "--stranger", "--database", str(database)], {}
    )
    assert confirmed.returncode == 0, confirmed.stderr
    args = ["run", "stats", "--broker", broker.url, "--gallery", str(gallery_dir), "--instance", "st"]
    env = {"FACEWIRE_STATS__PUBLISH_INTERVAL": "0.5", "FACEWIRE_RECORDER__DATABASE": str(database)}
    service = start_module("alert_service", args, env, tmp_path / "stats.log")
    try:
        wait_for_online(broker.url, "stats", "st", timeout=600)
        published = collector.wait_for(lambda _t: True, 1, 600)
        assert published, log_tail(tmp_path / "stats.log")
        stats = ThresholdReport.from_json(published[-1][1])
        # live results are counted once each (a redelivered result is not counted twice)
        live = [face("cam1", seq, "unknown", 0.2 + seq / 100) for seq in range(40)]
        publish_all(broker.url, results_payloads(live + live[:10]))
        with_live = collector.wait_for(lambda _t: True, len(published) + 1, 30)
        shown = run_module("facewire_console", ["stats", "--broker", broker.url, "--plot", str(tmp_path / "t.png")], {})
    finally:
        service.terminate()
        service.wait(20)
        collector.stop()
    assert service.returncode == 0, log_tail(tmp_path / "stats.log")
    cache = EmbeddingCache(ModelSettings().cache_dir / "gallery" / "embeddings.sqlite")
    try:
        gallery = build_gallery(gallery_dir, analyzer, cache)
        unknown = embed_folder(shared_data / "lfw-dev" / "unknown", analyzer, cache)
    finally:
        cache.close()
    assert stats.gallery_version == gallery.version and stats.counts["gallery_impostor"] == len(gallery.labels)
    assert stats.counts["confirmed_impostor"] == 1 and stats.counts["confirmed_genuine"] == 0
    assert stats.recommended is not None and stats.eer is not None
    threshold = stats.recommended.threshold
    best = (unknown @ gallery.embeddings.T).max(axis=1)
    measured_far = float((best >= threshold).mean())
    report = f"threshold {threshold} ({stats.recommended.method}): FAR {measured_far:.2e} on {len(unknown)} unknowns"
    assert TARGET_FAR / 2 <= measured_far <= TARGET_FAR * 2, report
    assert stats.eer.threshold < threshold
    assert json.loads(with_live[-1][1])["counts"]["live"] == 40
    assert shown.returncode == 0, shown.stderr
    assert f"{threshold:.3f}" in shown.stdout and "EER" in shown.stdout
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
