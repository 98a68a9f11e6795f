"""Photo-library scan: recognise the faces of a whole collection, resumable and parallel across cores.

Each worker process loads the models and the gallery once; the parent appends one JSON line per
file to the report as results arrive, so an interrupted scan resumes where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier_service.identify import identify_image
from classifier_service.matcher import Matcher
from classifier_service.quality import Cohort, cohort_for
from facewire.config import ModelSettings
from facewire.errors import ImageError, SourceError
from facewire.faces import FaceAnalyzer, create_analyzer
from facewire.images import is_image_file, load_image
from facewire.sources import VIDEO_SUFFIXES, sampled, source_fps, video_frames


@dataclass(frozen=True)
class ScanSetup:
    """What a worker needs to rebuild the analyzer and matcher in its own process."""

    model: ModelSettings
    embeddings: np.ndarray
    labels: list[str]
    threshold: float
    top_k: int
    min_face: int
    quality_slopes: tuple[float, float, float] | None = None  # None: classifier.quality_slopes's default
    cohort: Cohort | None = None  # None: the shipped cohort normalisation for the embedder


_worker: tuple[FaceAnalyzer, Matcher, tuple[float, float, float] | None] | None = None


def _init(setup: ScanSetup) -> None:
    global _worker
    analyzer = create_analyzer(setup.model, det_threshold=0.6, min_face=setup.min_face)
    cohort = setup.cohort if setup.cohort is not None else cohort_for(analyzer.embedder.model_id)
    matcher = Matcher(setup.embeddings, setup.labels, setup.threshold, setup.top_k, cohort=cohort)
    _worker = (analyzer, matcher, setup.quality_slopes)


@dataclass(frozen=True)
class ScannedFile:
    """The report line of one file and the embedding of each of its faces (in the line's order)."""

    line: dict[str, Any]
    vectors: np.ndarray


def scan_file(path: Path) -> ScannedFile:
    """The report line of one file (faces with names and scores, or the error) and the faces' embeddings.
    Videos are sampled at one frame per second; each of their faces carries its ``frame``."""
    assert _worker is not None, "worker not initialised"
    analyzer, matcher, slopes = _worker
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            found = [
                (face, {"frame": frame.index})
                for frame in sampled(video_frames(str(path), live=False), source_fps(str(path)), 1.0)
                for face in identify_image(analyzer, matcher, frame.image, slopes)
            ]
        else:
            found = [(face, {}) for face in identify_image(analyzer, matcher, load_image(path), slopes)]
    except (ImageError, SourceError) as exc:
        return ScannedFile({"file": str(path), "error": str(exc), "faces": []}, np.zeros((0, 0), dtype=np.float32))
    vectors = [face.embedding for face, _ in found if face.embedding is not None]
    line = {"file": str(path), "faces": [{**face.to_dict(), **extra} for face, extra in found]}
    return ScannedFile(line, np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32))


def photos(root: Path) -> list[Path]:
    """Every photo and video under ``root``, sorted."""
    return sorted(
        p for p in root.rglob("*") if is_image_file(p) or (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    )


def already_done(report: Path) -> set[str]:
    """Files already in a report from an earlier (possibly interrupted) scan."""
    if not report.exists():
        return set()
    done = set()
    for line in report.read_text().splitlines():
        try:
            done.add(json.loads(line)["file"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by an interruption: that file is scanned again
    return done


def run_scan(files: list[Path], setup: ScanSetup, workers: int, on_result: Callable[[ScannedFile], None]) -> None:
    """Scan ``files`` on ``workers`` processes, calling ``on_result`` in the parent for each file."""
    if workers <= 1:
        _init(setup)
        for path in files:
            on_result(scan_file(path))
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init, initargs=(setup,)) as pool:
        for line in pool.imap_unordered(scan_file, files, chunksize=4):
            on_result(line)


def summarise(lines: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per person: number of photos and faces, and the files they are in."""
    people: dict[str, dict[str, Any]] = {}
    for line in lines:
        for face in line.get("faces", []):
            entry = people.setdefault(face["name"], {"photos": 0, "faces": 0, "files": []})
            entry["faces"] += 1
            if line["file"] not in entry["files"]:
                entry["files"].append(line["file"])
                entry["photos"] += 1
    return people
