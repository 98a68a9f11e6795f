"""Helpers for gallery tests: real embeddings of real photos, a manager on a temporary store, probes."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from classifier_service.gallery.manager import GalleryManager
from classifier_service.gallery.operations import Outcome, apply_command
from classifier_service.gallery.setup import open_manager
from facewire.config import Settings, load_settings
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.schema import FaceEmbedding, FaceResult
from facewire.schema.gallery import GalleryCommand
from harness.processes import SAMPLE

KNOWN = SAMPLE / "lfw" / "known"


def photos(person_dir: Path) -> list[Path]:
    return sorted(p for p in person_dir.iterdir() if p.suffix.lower() == ".jpg")


def make_gallery(root: Path, people: dict[str, list[Path]]) -> Path:
    """Copy photos into ROOT/<person>/ and return ROOT."""
    for person, files in people.items():
        (root / person).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, root / person / file.name)
    return root


def settings_for(tmp: Path, gallery: Path, threshold: float = 0.45, **gallery_conf: Any) -> Settings:
    return load_settings(
        None,
        {
            "classifier": {"gallery": str(gallery), "threshold": threshold},
            "gallery": {"store_dir": str(tmp / "store"), **gallery_conf},
        },
    )


def open_test_manager(settings: Settings, analyzer: FaceAnalyzer, instance: str = "t") -> GalleryManager:
    manager = open_manager(settings, instance, analyzer)
    manager.open()
    return manager


def largest_embedding(analyzer: FaceAnalyzer, path: Path) -> np.ndarray:
    faces = analyzer.analyze(load_image(path))
    largest = max(faces, key=lambda f: f.size)
    assert largest.embedding is not None
    return largest.embedding


def result_for(embedding: FaceEmbedding, name: str = "unknown") -> FaceResult:
    """The result a classifier would have published for ``embedding`` naming ``name``."""
    return FaceResult(
        node=embedding.node,
        seq=embedding.seq,
        track=1,
        frame=embedding.seq,
        ts=embedding.ts,
        name=name,
        score=0.1 if name == "unknown" else 0.6,
        known=name != "unknown",
        threshold=0.45,
        model=embedding.model,
        gallery_version="x",
        classified_at=time.time(),
        latency_ms=1.0,
    )


def command(manager: GalleryManager, body: dict[str, Any]) -> Outcome:
    """Apply a command (and whatever it forwards) as the MQTT adapter would."""
    return applied(manager, GalleryCommand.from_json(json.dumps({"id": "t", **body}).encode()))


def applied(manager: GalleryManager, parsed: GalleryCommand) -> Outcome:
    outcome = apply_command(manager, parsed)
    for forwarded in outcome.forward:  # through the wire format, as every replica receives it
        outcome.events += applied(manager, GalleryCommand.from_json(forwarded.to_json())).events
    return outcome


def b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
