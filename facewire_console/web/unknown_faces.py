"""Thumbnails of unknown faces that opted-in edges send (``edge.unknown_thumbnails``), kept for a bounded time.

Each message on ``<prefix>/thumbnails/<node>`` is checked (JSON, node of the
topic, sequence number, a small real JPEG) and stored as
``web.data_dir/unknown/<node>/<seq>.jpg``; files older than
``web.thumbnail_hours`` are deleted, and a cluster's thumbnails are deleted
when it is named. The unknown-visitors page shows them beside their cluster
(the classifiers list each cluster's newest members as NODE/SEQ).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from facewire.errors import ImageError, SchemaError
from facewire.images import decode_image
from facewire.schema.thumbnail import Thumbnail
from facewire.topics import valid_node_id

MAX_SIDE = 256
SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only (str.isdigit takes '²', which int() refuses)


class UnknownFaces:
    """The folder of unknown-face thumbnails: validated writes, lookups that cannot leave it, time-bounded."""

    def __init__(self, folder: Path, hours: float) -> None:
        self.folder = folder
        self.max_age = hours * 3600.0
        self.refused = 0

    def ingest(self, topic_node: str, payload: bytes) -> bool:
        """Store one thumbnail message; False (and counted) if it is not a small JPEG of this node's face."""
        try:
            thumbnail = Thumbnail.from_json(payload)
            if thumbnail.node != topic_node:
                raise SchemaError("node-mismatch", f"topic says {topic_node!r}")
            height, width = decode_image(thumbnail.jpeg, "thumbnail").shape[:2]
            if max(height, width) > MAX_SIDE:
                raise ImageError("too large")
        except (SchemaError, ImageError):
            self.refused += 1
            return False
        node, seq, jpeg = thumbnail.node, thumbnail.seq, thumbnail.jpeg
        target = self.folder / node / f"{seq}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(jpeg)
        os.replace(temporary, target)
        return True

    def path(self, key: str) -> Path | None:
        """The file of ``NODE/SEQ`` if it is kept (never a path outside the folder)."""
        node, _, seq = key.partition("/")
        if not valid_node_id(node) or SEQ.fullmatch(seq) is None:
            return None
        path = self.folder / node / f"{int(seq)}.jpg"
        return path if path.is_file() else None

    def erase(self, keys: list[str]) -> int:
        removed = 0
        for key in keys:
            path = self.path(key)
            if path is not None:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def prune(self, now: float | None = None) -> int:
        """Delete thumbnails older than the retention; returns how many."""
        cutoff = (time.time() if now is None else now) - self.max_age
        removed = 0
        if not self.folder.is_dir():
            return 0
        for node_dir in self.folder.iterdir():
            for file in node_dir.glob("*.jpg") if node_dir.is_dir() else []:
                if file.stat().st_mtime < cutoff:
                    file.unlink(missing_ok=True)
                    removed += 1
            if node_dir.is_dir() and not any(node_dir.iterdir()):
                shutil.rmtree(node_dir, ignore_errors=True)
        return removed
