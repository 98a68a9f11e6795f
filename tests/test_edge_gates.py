"""Track first, embed later (issue 20): the gates, when a track's face is embedded, half-size detection,
and recognition on the bundled clip no worse than with every face embedded."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.edge_names import NameLog, sample_matcher
from edge_agent.detection import AdaptiveDetection
from edge_agent.pipeline import EdgePipeline
from edge_agent.quality import Gates
from edge_agent.tracking import FaceTracker, iou
from facewire.config import EdgeSettings
from facewire.faces import FaceAnalyzer, pitch_offset
from facewire.images import load_image
from facewire.models.detector import Detection
from facewire.sources import Frame, open_frames, source_fps
from facewire_console.broker import LocalBroker
from harness.processes import Collector, run_module

GATES = Gates.of(EdgeSettings())
FRONTAL = np.array([[30, 40], [70, 40], [50, 62], [35, 80], [65, 80]], dtype=np.float32)


def detection(landmarks: np.ndarray, side: float = 100.0) -> Detection:
    return Detection((0.0, 0.0, side, side), 0.9, landmarks)


def test_pose_and_size_gates_from_the_box_and_landmarks() -> None:
    assert GATES.detection(detection(FRONTAL)) is None
    assert GATES.detection(detection(FRONTAL, side=39)) == "small"
    turned = FRONTAL.copy()
    turned[2, 0] = 78  # nose past the far eye: a profile
    assert GATES.detection(detection(turned)) == "yaw"
    tilted = FRONTAL.copy()
    tilted[2, 1] = 41  # nose tip on the eye line: head thrown back
    assert GATES.detection(detection(tilted)) == "pitch"
    assert abs(pitch_offset(FRONTAL) - (22 / 40 - 0.55)) < 1e-6


def test_every_sample_photo_passes_the_gates_and_a_blurred_copy_does_not(
    analyzer: FaceAnalyzer, sample_dir: Path
) -> None:
    photos = sorted((sample_dir / "lfw").rglob("*.jpg")) + sorted((sample_dir / "enroll").rglob("*.png"))
    assert len(photos) == 32
    for photo in photos:
        face = max(analyzer.faces(load_image(photo)), key=lambda f: f.size)
        assert GATES.detection(face.detection) is None and GATES.face(face) is None, (photo, face.quality)
    image = load_image(photos[0])
    blurred = max(analyzer.faces(cv2.GaussianBlur(image, (0, 0), 6)), key=lambda f: f.size)
    assert GATES.face(blurred) == "blurred", blurred.quality


def test_a_track_is_embedded_when_new_clearly_better_or_due() -> None:
    tracker = FaceTracker(min_iou=0.3, max_age=10.0)
    (track,) = tracker.update([(0, 0, 50, 50)], ts=0.0)
    assert tracker.wants_embedding(track, 50.0, 0.0, better=1.3, refresh=5.0)
    tracker.embedded(track, 50.0, 0.0)
    assert not tracker.wants_embedding(track, 60.0, 1.0, better=1.3, refresh=5.0)
    assert tracker.wants_embedding(track, 65.0, 1.0, better=1.3, refresh=5.0)
    tracker.embedded(track, 65.0, 1.0)
    assert not tracker.wants_embedding(track, 40.0, 5.9, better=1.3, refresh=5.0)
    assert tracker.wants_embedding(track, 40.0, 6.0, better=1.3, refresh=5.0)


def test_half_size_detection_finds_large_faces_where_full_size_does(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    image = cv2.resize(load_image(next((sample_dir / "lfw/known/Tony_Blair").iterdir())), (500, 500))
    adaptive = AdaptiveDetection(analyzer.detector, min_face=40, full_scan_seconds=0.5)
    (full,) = [d for d in adaptive.detect(image, 0.0, None) if d.bbox[2] > 80]
    half = adaptive.detect(image, 0.1, smallest_face=full.bbox[2])
    assert adaptive.half_size_frames == 1
    assert max(iou(full.bbox, d.bbox) for d in half) > 0.8
    assert adaptive.detect(image, 0.6, smallest_face=full.bbox[2]) and adaptive.half_size_frames == 1, "full scan due"
    adaptive.detect(image, 0.7, smallest_face=60.0)
    assert adaptive.half_size_frames == 1, "a face under twice min_face needs the full size"


def test_clip_embeds_few_faces_and_names_miranda_no_worse(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    """With every face embedded (before issue 20) the clip gave 611 embedded / 207 published faces and named
    Lin-Manuel Miranda on 2 tracks and 142 frames, nobody else (bench/edge.py ``every-face``, video time)."""
    clip = str(sample_dir / "short_hamilton_clip.mp4")
    settings = EdgeSettings(node_id="t")
    seqs = iter(range(10_000))
    edge = FaceAnalyzer(analyzer.detector, analyzer.embedder, settings.min_face)
    pipeline = EdgePipeline(edge, settings, lambda: next(seqs))
    names = NameLog(sample_matcher(edge))
    fps = source_fps(clip)
    for frame in open_frames(clip):
        video_time = Frame(frame.index, 1000.0 + frame.index / fps, frame.image)
        names.frame(frame.index, pipeline.process(video_time), [face.track for face in pipeline.last_faces])
    counters, seen = pipeline.counters, names.summary()
    assert counters.faces == sum(counters.gated.values()) + counters.duplicates + counters.published
    assert 0 < counters.published <= counters.embedded <= 1.3 * counters.published
    assert counters.embedded < 611 / 10
    assert set(counters.gated) <= {"small", "yaw", "pitch", "blurred"} and counters.gated["blurred"] > 0
    assert seen["Lin_Manuel_Miranda"]["tracks"] >= 2 and seen["Lin_Manuel_Miranda"]["frames"] >= 142, seen
    assert set(seen) <= {"Lin_Manuel_Miranda", "unknown"}, "nobody else is named on the clip"


def test_run_once_reports_embedded_and_gated_counts_in_its_summary_and_status(
    broker: LocalBroker, sample_dir: Path, tmp_path: Path
) -> None:
    # the embeddings topic too: with no subscriber the broker answers 0x10 and `--once` keeps the faces, exit 1
    status = Collector(broker.url, ["facewire/nodes/+/status", "facewire/embeddings/+"]).start()
    try:
        edge = run_module(
            "edge_agent",
            ["run", "--node-id", "gates", "--source", str(sample_dir / "short_hamilton_clip.mp4"), "--once",
             "--skip-frames", "2", "--broker", broker.url],
            {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path / "state")},
        )  # fmt: skip
        assert edge.returncode == 0, edge.stderr
        line = re.search(
            r"(\d+) frames, (\d+) faces, (\d+) published \((\d+) duplicates skipped\), (\d+) embedded, "
            r"gated ((?:[a-z]+ \d+(?:, )?)+), [\d.]+ frames/s",
            edge.stderr,
        )
        assert line, edge.stderr
        frames, faces, published, duplicates, embedded = (int(line.group(i)) for i in range(1, 6))
        gated = {reason: int(n) for reason, n in (part.split(" ") for part in line.group(6).split(", "))}
        assert frames == 92 and faces == sum(gated.values()) + duplicates + published
        assert 0 < published <= embedded and gated["blurred"] > 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and offline_status(status) is None:
            time.sleep(0.05)
        last = offline_status(status)
        assert last is not None and last["embedded"] == embedded and last["gated"] == gated, last
    finally:
        status.stop()


def offline_status(status: Collector) -> dict[str, Any] | None:
    """The node's last status if it is the offline one it publishes at exit."""
    found = status.matching(lambda topic: topic.endswith("/gates/status"))
    last: dict[str, Any] | None = json.loads(found[-1][1]) if found else None
    return last if last is not None and last["state"] == "offline" else None
