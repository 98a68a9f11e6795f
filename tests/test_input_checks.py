"""Names are checked whole, and a thumbnail's seq cannot make a file name (issue 18, item 7).

A pattern ending in ``$`` also matches before a final newline; every name check uses fullmatch.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.errors import SchemaError
from facewire.schema.gallery import valid_person
from facewire.topics import valid_node_id
from facewire_console.web.auth import USER_PATTERN
from facewire_console.web.unknown_faces import UnknownFaces
from harness.processes import run_module


def test_names_with_a_trailing_newline_are_refused() -> None:
    assert valid_node_id("cam-1") and not valid_node_id("cam-1\n")
    assert valid_person("Ann Lee") == "Ann Lee"
    with pytest.raises(SchemaError):
        valid_person("Ann Lee\n")
    assert USER_PATTERN.fullmatch("admin") and not USER_PATTERN.fullmatch("admin\n")


def test_the_edge_agent_and_add_node_refuse_a_node_id_ending_in_a_newline(tmp_path: Path) -> None:
    edge = run_module("edge_agent", ["run", "--node-id", "cam-1\n", "--source", str(tmp_path), "--once"], {})
    assert edge.returncode == 2 and "node id" in edge.stderr, edge.stderr[-1000:]
    add = run_module(
        "facewire_console",
        ["broker", "add-node", "cam-7\n", "--passwd", str(tmp_path / "passwd"), "--secrets-dir", str(tmp_path / "s")],
        {},
        timeout=60,
    )
    assert add.returncode == 2 and not (tmp_path / "passwd").exists(), add.stderr[-1000:]


def thumbnail(seq: int) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", np.full((32, 32, 3), 128, np.uint8))
    assert ok
    return json.dumps(
        {"v": 1, "node": "cam-1", "seq": seq, "track": 1, "ts": 1.0, "jpeg": base64.b64encode(jpeg).decode()}
    ).encode()


def test_a_huge_thumbnail_seq_is_refused_not_a_crash(tmp_path: Path) -> None:
    faces = UnknownFaces(tmp_path / "unknown", hours=1.0)
    assert faces.ingest("cam-1", thumbnail(7))
    assert faces.path("cam-1/7") is not None
    assert not faces.ingest("cam-1", thumbnail(10**300)), "a 301-digit seq is no file name"
    assert faces.refused == 1
    for key in ("cam-1/" + "9" * 300, "cam-1/²", "cam-1/٧", "cam-1\n/7"):
        assert faces.path(key) is None, key
