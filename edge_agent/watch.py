"""Watched folders: process images and videos as they appear, remembering what was done across restarts."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from facewire.errors import ImageError, SourceError
from facewire.images import is_image_file, load_image
from facewire.logs import kv
from facewire.sources import VIDEO_SUFFIXES, Frame, video_frames

log = logging.getLogger(__name__)


class WatchState:
    """SQLite record of the files already processed (path, size, mtime)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS done (path TEXT PRIMARY KEY, size INTEGER, mtime REAL, at REAL)")

    def is_done(self, path: Path, size: int, mtime: float) -> bool:
        row = self._db.execute("SELECT size, mtime FROM done WHERE path = ?", (str(path),)).fetchone()
        return row is not None and row[0] == size and row[1] == mtime

    def mark(self, path: Path, size: int, mtime: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?)", (str(path), size, mtime, time.time()))
        self._db.commit()


def _settled(path: Path, settle: float) -> tuple[int, float] | None:
    """(size, mtime) of a file not written to for ``settle`` seconds, else None (still being copied)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime) if time.time() - stat.st_mtime >= settle else None


def _images(path: Path, is_video: bool) -> Iterator[np.ndarray]:
    if is_video:
        for frame in video_frames(str(path), live=False):
            yield frame.image
    else:
        yield load_image(path)


def watched_frames(
    folder: Path, state: WatchState, stop: threading.Event, poll: float = 1.0, settle: float = 0.5
) -> Iterator[Frame]:
    """Frames of every new image and video under ``folder``, forever (until ``stop``), each file once."""
    index = 0
    while not stop.is_set():
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            is_video = path.suffix.lower() in VIDEO_SUFFIXES
            if not (is_video or is_image_file(path)):
                continue
            stamp = _settled(path, settle)
            if stamp is None or state.is_done(path, *stamp):
                continue
            first = index
            try:
                for image in _images(path, is_video):
                    yield Frame(index, time.time(), image, str(path.relative_to(folder)))
                    index += 1
            except (ImageError, SourceError) as exc:
                log.warning(kv("watch-skipped", path=path, reason=str(exc)))
            state.mark(path, *stamp)
            log.info(kv("watch-processed", path=path, frames=index - first))
        stop.wait(poll)
