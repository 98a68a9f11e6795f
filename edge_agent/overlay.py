"""Annotated preview: boxes and names drawn from the results that come back over MQTT.

Results are matched to faces by track id: every face of a frame carries its track,
and the newest result of a track names the box. Frames wait up to ``delay`` seconds
for the results of the faces published from them, so a recording shows each face with
the answer it got, not the answer of a later frame.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_agent.pipeline import TrackedFace
from facewire.errors import ConfigError
from facewire.schema import FaceResult

PENDING = (160, 160, 160)
KNOWN = (60, 180, 60)
LOW = (0, 200, 230)
UNKNOWN = (40, 40, 220)


@dataclass
class _Pending:
    image: np.ndarray
    faces: list[TrackedFace]
    frame: int
    queued: float
    waiting: set[int] = field(default_factory=set)


def colour(result: FaceResult | None, low_margin: float = 0.05) -> tuple[int, int, int]:
    """BGR colour of a box: grey pending, green known, yellow low confidence, red unknown."""
    if result is None:
        return PENDING
    if not result.known:
        return UNKNOWN
    return LOW if result.score < result.threshold + low_margin else KNOWN


def draw(image: np.ndarray, faces: list[TrackedFace], names: dict[int, FaceResult]) -> list[dict[str, object]]:
    """Draw every face on ``image`` (in place); return what was drawn."""
    drawn = []
    for face in faces:
        result = names.get(face.track)
        x, y, w, h = (round(v) for v in face.bbox)
        bgr = colour(result)
        label = "..." if result is None else f"{result.name} {result.score:.2f}"
        cv2.rectangle(image, (x, y), (x + w, y + h), bgr, 2)
        cv2.putText(image, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, bgr, 1, cv2.LINE_AA)
        drawn.append({"track": face.track, "bbox": [x, y, w, h], "label": label})
    return drawn


class Annotator:
    """Collects results per track and writes annotated frames to a video file and/or a window."""

    def __init__(self, record: Path | None, preview: bool, fps: float, delay: float = 1.0) -> None:
        if preview and "GUI:                           NONE" in cv2.getBuildInformation():
            raise ConfigError(
                "this OpenCV build has no GUI (opencv-python-headless): use --record FILE.mp4, "
                "or install opencv-python in place of opencv-python-headless on a desktop machine"
            )
        self.record = record
        self.preview = preview
        self.fps = fps or 10.0
        self.delay = delay
        self._names: dict[int, FaceResult] = {}
        self._answered: set[int] = set()
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._writer: cv2.VideoWriter | None = None
        self._log: list[dict[str, object]] = []
        self.frames_written = 0

    def on_result(self, result: FaceResult) -> None:
        """Called from the MQTT thread for each result of this node."""
        with self._lock:
            self._names[result.track] = result
            self._answered.add(result.seq)

    def add_frame(self, frame: int, image: np.ndarray, faces: list[TrackedFace]) -> None:
        """Queue a processed frame; write every frame whose results are in or whose wait is over."""
        waiting = {f.seq for f in faces if f.seq is not None}
        self._queue.append(_Pending(image.copy(), faces, frame, time.monotonic(), waiting))
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        while self._queue:
            head = self._queue[0]
            with self._lock:
                head.waiting -= self._answered
                ready = force or not head.waiting or time.monotonic() - head.queued >= self.delay
                names = dict(self._names)
            if not ready:
                return
            self._queue.popleft()
            self._write(head, names)

    def _write(self, pending: _Pending, names: dict[int, FaceResult]) -> None:
        drawn = draw(pending.image, pending.faces, names)
        self._log.append({"frame": pending.frame, "faces": drawn})
        if self.record is not None:
            if self._writer is None:
                height, width = pending.image.shape[:2]
                self._writer = cv2.VideoWriter(
                    str(self.record), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (width, height)
                )
                if not self._writer.isOpened():
                    raise ConfigError(f"cannot write video {self.record}")
            self._writer.write(pending.image)
        if self.preview:
            cv2.imshow("facewire", pending.image)
            cv2.waitKey(1)
        self.frames_written += 1

    def close(self) -> None:
        """Give late results up to ``delay`` seconds, write what is still queued, close the video and
        write its JSON sidecar (boxes and labels per frame)."""
        deadline = time.monotonic() + self.delay
        while self._queue and time.monotonic() < deadline:
            self.flush(force=False)
            time.sleep(0.02)
        self.flush(force=True)
        if self._writer is not None:
            self._writer.release()
        if self.record is not None:
            self.record.with_suffix(".json").write_text(json.dumps(self._log) + "\n")
