"""The edge agent's pure parts: tracking, de-duplication, sources, sequence numbers, the pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.pipeline import EdgePipeline
from edge_agent.sequence import SequenceCounter
from edge_agent.tracking import FaceTracker, iou
from facewire.config import EdgeSettings
from facewire.errors import SourceError
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.sources import Frame, describe_source, folder_frames, open_frames, paced
from tests.test_schema import unit


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_tracker_keeps_ids_for_moving_boxes_and_expires_old_tracks() -> None:
    tracker = FaceTracker(min_iou=0.3, max_age=1.0)
    first = tracker.update([(0, 0, 10, 10), (100, 100, 10, 10)], ts=0.0)
    second = tracker.update([(101, 101, 10, 10), (1, 1, 10, 10)], ts=0.1)
    assert second == [first[1], first[0]]
    for tenth in range(2, 50):  # 10 frames/s with no face for 4.9 s: the tracks end after 1 s
        tracker.update([], ts=tenth / 10)
    third = tracker.update([(1, 1, 10, 10)], ts=5.0)
    assert third[0] not in first


def test_a_device_slower_than_max_age_keeps_its_tracks_between_frames() -> None:
    """One frame every 2.5 s (a Pi at --max-fps 0.4) with max_age 1 s: the face stays one track."""
    tracker = FaceTracker(min_iou=0.3, max_age=1.0)
    ids = [tracker.update([(10 + step, 10, 40, 40)], ts=step * 2.5)[0] for step in range(4)]
    assert len(set(ids)) == 1
    assert tracker.update([], ts=10.0) == [] and tracker.update([(10, 10, 40, 40)], ts=20.0)[0] != ids[0]


def test_dedup_skips_near_identical_faces_until_refresh() -> None:
    tracker = FaceTracker(min_iou=0.3, max_age=10.0)
    (track,) = tracker.update([(0, 0, 10, 10)], ts=0.0)
    face = unit(seed=1)
    assert tracker.should_publish(track, face, 0.0, max_cosine=0.9, refresh=5.0)
    assert not tracker.should_publish(track, face, 1.0, max_cosine=0.9, refresh=5.0)
    assert tracker.should_publish(track, unit(seed=2), 2.0, max_cosine=0.9, refresh=5.0)
    assert tracker.should_publish(track, unit(seed=2), 7.5, max_cosine=0.9, refresh=5.0)


def test_sequence_survives_restart_and_never_repeats(tmp_path: Path) -> None:
    counter = SequenceCounter(tmp_path / "n.seq")
    seen = [counter() for _ in range(1500)]
    restarted = SequenceCounter(tmp_path / "n.seq")
    assert restarted() > max(seen) and seen == sorted(set(seen))


def test_folder_source_skips_corrupt_files(tmp_path: Path, sample_dir: Path) -> None:
    shutil.copy(sample_dir / "lfw/known/Tony_Blair/Tony_Blair_0001.jpg", tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(folder_frames(tmp_path))
    assert [f.label for f in frames] == ["a.jpg"]


def test_sources_are_described_and_missing_ones_fail_clearly(tmp_path: Path, sample_dir: Path) -> None:
    assert describe_source("0") == "camera" and describe_source("rtsp://cam/1") == "stream"
    assert describe_source(str(tmp_path)) == "folder"
    with pytest.raises(SourceError, match="not found"):
        open_frames(str(tmp_path / "missing.mp4"))
    (tmp_path / "fake.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        open_frames(str(tmp_path / "fake.mp4"))
    clip = list(open_frames(str(sample_dir / "short_hamilton_clip.mp4")))
    assert len(clip) == 275 and clip[0].image.shape == (360, 640, 3)


def test_skip_frames_and_loop() -> None:
    frames = iter(range(10))
    assert list(paced(frames, max_fps=0, skip_frames=2)) == [0, 3, 6, 9]  # type: ignore[arg-type]


def test_pipeline_tracks_a_video_and_skips_duplicates(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    settings = EdgeSettings(node_id="t", min_face=40)
    counter = iter(range(10_000))
    pipeline = EdgePipeline(FaceAnalyzer(analyzer.detector, analyzer.embedder, 40), settings, lambda: next(counter))
    messages = []
    for frame in open_frames(str(sample_dir / "short_hamilton_clip.mp4")):
        messages.extend(pipeline.process(frame))
        if frame.index == 120:
            break
    assert pipeline.counters.duplicates > 0 and pipeline.counters.published == len(messages) > 0
    assert [m.seq for m in messages] == list(range(len(messages)))
    assert all(abs(float(np.linalg.norm(m.emb)) - 1) < 1e-3 and m.model == "sface-2021dec" for m in messages)
    assert all(min(m.bbox[2], m.bbox[3]) >= 40 for m in messages)


def test_still_images_of_a_folder_never_share_a_track(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    """Two photos with the face in the same place are two scenes; two video frames are one."""
    photo = sample_dir / "lfw/known/Tony_Blair/Tony_Blair_0001.jpg"
    image = load_image(photo)
    counter = iter(range(100))
    pipeline = EdgePipeline(analyzer, EdgeSettings(node_id="t"), lambda: next(counter))
    video = [pipeline.process(Frame(i, 100.0 + i * 0.04, image)) for i in range(2)]
    stills = [pipeline.process(Frame(i, 200.0 + i * 0.04, image, f"{i}.jpg")) for i in range(2)]
    assert video[0] and video[1] == []  # the same faces again in a video: tracked and de-duplicated
    tracks = [{m.track for m in messages} for messages in (video[0], *stills)]
    assert len(stills[0]) == len(stills[1]) == len(video[0]), "every still is published afresh"
    assert not (tracks[0] & tracks[1]) and not (tracks[1] & tracks[2]) and not (tracks[0] & tracks[2])
