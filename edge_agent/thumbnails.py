"""Opt-in thumbnails of unknown faces (``edge.unknown_thumbnails``, off by default).

By design no face image leaves an edge. With this option on, the edge keeps a
small JPEG of each face it published (in memory, the last ``KEPT`` only) and
sends it on ``<prefix>/thumbnails/<node>`` once the classifier has answered
*unknown* for that face, at most once per track, so an operator can review
unknown visitors by eye in ``facewire web``. Faces of known people and faces
never answered are never sent; kept JPEGs are dropped as new ones come.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2
import numpy as np

KEPT = 256  # thumbnails waiting for their result
TRACKS_REMEMBERED = 4096
MARGIN = 0.25  # of the face box, on each side
QUALITY = 75


def face_thumbnail(image: np.ndarray, bbox: tuple[float, float, float, float], side: int) -> bytes:
    """A ``side`` x ``side`` JPEG (about 1-3 KB) of the face in ``bbox`` [x, y, w, h] with a small margin."""
    x, y, w, h = bbox
    size = max(w, h) * (1 + 2 * MARGIN)
    cx, cy = x + w / 2, y + h / 2
    height, width = image.shape[:2]
    left, top = max(int(cx - size / 2), 0), max(int(cy - size / 2), 0)
    right, bottom = min(int(cx + size / 2), width), min(int(cy + size / 2), height)
    crop = image[top:bottom, left:right] if right > left and bottom > top else image
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise ValueError("cannot encode thumbnail")
    return encoded.tobytes()


class ThumbnailKeeper:
    """Thumbnails of published faces until their result says known (dropped) or unknown (handed out once per track).

    ``keep`` runs on the capture loop, ``take_unknown`` on the MQTT network thread.
    """

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._lock = threading.Lock()
        self._waiting: OrderedDict[int, tuple[int, float, bytes]] = OrderedDict()
        self._sent_tracks: OrderedDict[int, None] = OrderedDict()
        self.sent = 0

    def keep(self, seq: int, track: int, ts: float, jpeg: bytes) -> None:
        with self._lock:
            if track in self._sent_tracks:
                return
            self._waiting[seq] = (track, ts, jpeg)
            while len(self._waiting) > self.kept:
                self._waiting.popitem(last=False)

    def take_unknown(self, seq: int, known: bool) -> tuple[int, float, bytes] | None:
        """The thumbnail of ``seq`` if its result is unknown and its track has sent none yet; forgotten either way."""
        with self._lock:
            item = self._waiting.pop(seq, None)
            if item is None or known or item[0] in self._sent_tracks:
                return None
            self._sent_tracks[item[0]] = None
            while len(self._sent_tracks) > TRACKS_REMEMBERED:
                self._sent_tracks.popitem(last=False)
            for other in [s for s, waiting in self._waiting.items() if waiting[0] == item[0]]:
                del self._waiting[other]
            self.sent += 1
            return item
