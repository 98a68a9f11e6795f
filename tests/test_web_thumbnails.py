"""Opt-in thumbnails of unknown faces: the edge keeper, the message, the dashboard's checked, time-bounded store."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from edge_agent.thumbnails import ThumbnailKeeper, face_thumbnail
from facewire.images import load_image
from facewire.schema.thumbnail import Thumbnail
from facewire_console.web.unknown_faces import UnknownFaces
from harness.processes import SAMPLE

PHOTO = SAMPLE / "lfw" / "unknown" / "Paul_Tracy" / "Paul_Tracy_0001.jpg"


def test_a_thumbnail_is_a_small_square_jpeg_of_the_face() -> None:
    image = load_image(PHOTO)
    jpeg = face_thumbnail(image, (80.0, 70.0, 90.0, 110.0), 64)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (64, 64, 3) and len(jpeg) < 4096
    assert face_thumbnail(image, (-50.0, -50.0, 10.0, 10.0), 64)  # a box off the image still gives a picture


def test_only_unknown_results_release_a_thumbnail_once_per_track() -> None:
    keeper = ThumbnailKeeper(kept=3)
    for seq, track in ((1, 10), (2, 10), (3, 11), (4, 12)):
        keeper.keep(seq, track, 100.0 + seq, b"jpeg%d" % seq)
    assert keeper.take_unknown(1, known=False) is None  # pushed out: only the last 3 are kept
    assert keeper.take_unknown(3, known=True) is None  # a known face is never sent
    assert keeper.take_unknown(3, known=False) is None  # ... and is forgotten
    assert keeper.take_unknown(2, known=False) == (10, 102.0, b"jpeg2")
    keeper.keep(5, 10, 105.0, b"jpeg5")  # track 10 has sent its thumbnail: not kept again
    assert keeper.take_unknown(5, known=False) is None
    assert keeper.take_unknown(4, known=False) == (12, 104.0, b"jpeg4") and keeper.sent == 2


def test_the_dashboard_keeps_only_checked_thumbnails_for_a_bounded_time(tmp_path: Path) -> None:
    store = UnknownFaces(tmp_path, hours=1.0)
    jpeg = face_thumbnail(load_image(PHOTO), (80.0, 70.0, 90.0, 110.0), 64)
    assert store.ingest("cam-1", Thumbnail("cam-1", 7, 3, 1.0, jpeg).to_json())
    assert store.path("cam-1/7") == tmp_path / "cam-1" / "7.jpg"
    message = json.loads(Thumbnail("cam-1", 8, 3, 1.0, jpeg).to_json())
    refused = [
        ("cam-2", Thumbnail("cam-1", 8, 3, 1.0, jpeg).to_json()),  # another node's topic
        ("cam-1", json.dumps({**message, "jpeg": base64.b64encode(b"GIF89a....").decode()}).encode()),
        (
            "cam-1",
            json.dumps({**message, "jpeg": base64.b64encode(b"\xff\xd8\xff" + os.urandom(20_000)).decode()}).encode(),
        ),
        ("cam-1", json.dumps({**message, "seq": -1}).encode()),
        ("cam-1", b"not json"),
        ("../x", Thumbnail("../x", 8, 3, 1.0, jpeg).to_json()),
    ]
    assert not any(store.ingest(node, payload) for node, payload in refused) and store.refused == len(refused)
    for key in ("cam-1/8", "../cam-1/7", "cam-1/7.jpg", "cam-1/-7"):
        assert store.path(key) is None
    assert store.prune(now=time.time()) == 0
    assert store.prune(now=time.time() + 3601) == 1 and store.path("cam-1/7") is None
    assert store.ingest("cam-1", Thumbnail("cam-1", 9, 3, 1.0, jpeg).to_json())
    assert store.erase(["cam-1/9", "cam-1/10"]) == 1 and store.path("cam-1/9") is None
