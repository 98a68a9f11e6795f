"""Frame sources: a video file, a camera index, an RTSP/HTTP stream or a folder of images."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facewire.errors import ImageError, SourceError
from facewire.images import is_image_file, load_image
from facewire.logs import kv

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif", ".m4v"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    """One captured frame: its index in the source, capture time (epoch s) and BGR pixels."""

    index: int
    ts: float
    image: np.ndarray = field(repr=False)
    label: str = ""


def describe_source(spec: str) -> str:
    """'camera', 'stream', 'folder' or 'file' for a source specification."""
    if spec.isdigit():
        return "camera"
    if spec.startswith(STREAM_SCHEMES):
        return "stream"
    if Path(spec).is_dir():
        return "folder"
    return "file"


def source_fps(spec: str) -> float:
    """Frames per second a video file declares (0 for other sources or when unknown)."""
    if describe_source(spec) != "file":
        return 0.0
    capture = cv2.VideoCapture(spec)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    capture.release()
    return fps


def open_frames(
    spec: str, loop: bool = False, reconnect_seconds: float = 2.0, max_reconnects: int = -1
) -> Iterator[Frame]:
    """Frames of the source ``spec``. Live sources that drop are reopened; a file or folder
    ends at its end, or is replayed from the start when ``loop`` is set."""
    kind = describe_source(spec)
    if kind in ("camera", "stream"):
        return live_frames(spec, reconnect_seconds, max_reconnects)
    if kind == "file" and not Path(spec).is_file():
        raise SourceError(f"source not found: {spec}")
    if kind == "file":
        _open_capture(spec).release()  # fail now, with a clear error, if it cannot be decoded
    return replayed(spec, kind) if loop else _finite(spec, kind)


def _finite(spec: str, kind: str) -> Iterator[Frame]:
    return folder_frames(Path(spec)) if kind == "folder" else video_frames(spec, live=False)


def replayed(spec: str, kind: str) -> Iterator[Frame]:
    """A file or folder played over and over, with frame indexes that keep counting."""
    index = 0
    while True:
        played = 0
        for frame in _finite(spec, kind):
            yield Frame(index, frame.ts, frame.image, frame.label)
            index += 1
            played += 1
        if played == 0:
            raise SourceError(f"source {spec!r} has no frames")


def folder_frames(folder: Path) -> Iterator[Frame]:
    """Every image in ``folder`` (recursively, sorted); unreadable files are logged and skipped."""
    paths = sorted(p for p in folder.rglob("*") if is_image_file(p))
    for index, path in enumerate(paths):
        try:
            image = load_image(path)
        except ImageError as exc:
            log.warning(kv("image-skipped", reason=str(exc)))
            continue
        yield Frame(index, time.time(), image, str(path.relative_to(folder)))


def _open_capture(spec: str) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open video source {spec!r}")
    return capture


def video_frames(spec: str, live: bool) -> Iterator[Frame]:
    """Frames of one opened capture until it ends or fails."""
    capture = _open_capture(spec)
    index = 0
    try:
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                if live:
                    raise SourceError(f"video source {spec!r} stopped delivering frames")
                return
            yield Frame(index, time.time(), image)
            index += 1
    finally:
        capture.release()


def live_frames(spec: str, reconnect_seconds: float, max_reconnects: int) -> Iterator[Frame]:
    """A camera or stream, reopened with a pause whenever it disappears (forever if max_reconnects < 0)."""
    attempts = 0
    index = 0
    while True:
        try:
            for frame in video_frames(spec, live=True):
                attempts = 0
                yield Frame(index, frame.ts, frame.image)
                index += 1
        except SourceError as exc:
            attempts += 1
            if 0 <= max_reconnects < attempts:
                raise SourceError(f"{exc}; gave up after {max_reconnects} reconnects") from exc
            log.warning(kv("source-lost", source=spec, retry_in=reconnect_seconds, attempt=attempts))
            time.sleep(reconnect_seconds)


def sampled(frames: Iterator[Frame], source_fps: float, target_fps: float) -> Iterator[Frame]:
    """Keep about ``target_fps`` frames per second of source time (all frames when 0)."""
    step = max(1, round(source_fps / target_fps)) if target_fps > 0 and source_fps > 0 else 1
    return (frame for frame in frames if frame.index % step == 0)


def paced(frames: Iterator[Frame], max_fps: float, skip_frames: int) -> Iterator[Frame]:
    """Drop ``skip_frames`` after each kept frame and keep at most ``max_fps`` frames per second."""
    interval = 1.0 / max_fps if max_fps > 0 else 0.0
    next_due = 0.0
    for position, frame in enumerate(frames):
        if skip_frames and position % (skip_frames + 1):
            continue
        if interval:
            now = time.monotonic()
            if now < next_due:
                time.sleep(next_due - now)
            next_due = max(now, next_due) + interval
        yield frame
