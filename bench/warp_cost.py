"""The alignment's interpolation: what each costs at the edge, and what it does to small faces (issue 23).

Cost: every face of data/sample's photos, shrunk to ~23-31 px faces in a 640x360 frame as a camera would
see them, is warped onto the 112x112 template with each interpolation (bilinear, the shipped bicubic,
Lanczos) and embedded once, round by round, so a busy shared machine slows each alike; reported: the median
time per face of each warp against bilinear and against embedding that face, in the same run.

Accuracy (skipped with a message when the dataset is absent): lfw-dev's known people enrol their first
photo, clean; every other known photo and every stranger's photo is a probe, shrunk as in the
``enrol1-s0.35`` and ``enrol1-s0.22`` protocols (bench.protocols). Each probe is detected once and aligned
with each warp from the same landmarks, and the gallery is embedded with the same warp as its probes (as
after an upgrade with re-enrolment); a bilinear gallery with bicubic probes (an upgrade without it) is
reported too. Per warp: known probes named right at the default threshold, strangers named, with Wilson
intervals, and the paired count of known probes named by one warp and not by bilinear.

    python -m bench.warp_cost [--rounds 5] [--dataset DIR] [--json]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from bench.accuracy import DEFAULT_DATASET
from bench.calibration import wilson
from bench.common import machine_line, table, update_section, write_json
from bench.protocols import shrink_into_frame
from facewire.config import ModelSettings
from facewire.faces import FaceAnalyzer, create_analyzer
from facewire.images import load_image
from facewire.models.align import align_face
from facewire.models.registry import default_threshold
from facewire.progress import progress_bar
from facewire_console.demo import SAMPLE_DIR

WARPS = {"bilinear": cv2.INTER_LINEAR, "bicubic (shipped)": cv2.INTER_CUBIC, "Lanczos": cv2.INTER_LANCZOS4}
MIXED = "bilinear gallery, bicubic probes"
SCALES = (0.22, 0.35)
COMMAND = "python -m bench.warp_cost"


def _landmarks(frame: np.ndarray, analyzer: FaceAnalyzer) -> np.ndarray | None:
    """The landmarks of the best face with landmarks in ``frame``, or None."""
    found = [d for d in analyzer.detector.detect(frame) if d.landmarks is not None]
    return max(found, key=lambda d: d.score).landmarks if found else None


def cost(analyzer: FaceAnalyzer, rounds: int) -> dict[str, Any]:
    """Median ms per face of each warp and of one embedding, over ``rounds`` interleaved rounds."""
    faces = []
    for path in sorted((SAMPLE_DIR / "lfw").glob("*/*/*.jpg")):
        for scale in SCALES:
            frame = shrink_into_frame(load_image(path), scale, path.name)
            landmarks = _landmarks(frame, analyzer)
            if landmarks is not None:
                faces.append((frame, landmarks))
    analyzer.embedder.embed([align_face(*faces[0])])  # warm-up: model loading is not embedding
    times: dict[str, list[float]] = {name: [] for name in [*WARPS, "embedding"]}
    for _ in range(rounds):
        for name, flag in WARPS.items():
            start = time.perf_counter()
            for frame, landmarks in faces:
                align_face(frame, landmarks, interpolation=flag)
            times[name].append((time.perf_counter() - start) / len(faces))
        start = time.perf_counter()
        for frame, landmarks in faces:
            analyzer.embedder.embed([align_face(frame, landmarks, interpolation=cv2.INTER_LINEAR)])
        times["embedding"].append((time.perf_counter() - start) / len(faces))
    return {
        "faces": len(faces),
        "rounds": rounds,
        "ms_per_face": {name: statistics.median(values) * 1000 for name, values in times.items()},
    }


def _embedded(analyzer: FaceAnalyzer, frame: np.ndarray) -> dict[str, np.ndarray] | None:
    """The best face's embedding under each warp, from the same landmarks, or None without a face."""
    landmarks = _landmarks(frame, analyzer)
    if landmarks is None:
        return None
    vectors = analyzer.embedder.embed([align_face(frame, landmarks, interpolation=f) for f in WARPS.values()])
    return dict(zip(WARPS, vectors, strict=True))


def accuracy(analyzer: FaceAnalyzer, dataset: Path) -> dict[str, Any]:
    """Per scale and warp: known named right and strangers named at the default threshold (see the module)."""
    threshold = default_threshold(ModelSettings().embedder)
    assert threshold is not None
    people = sorted(p for p in (dataset / "known").iterdir() if p.is_dir())
    gallery: dict[str, dict[str, np.ndarray]] = {}
    probes: list[tuple[str, Path]] = []
    with progress_bar("warp: enrolment") as update:
        for done, person in enumerate(people, start=1):
            first, *others = sorted(p for p in person.iterdir() if p.is_file())
            vectors = _embedded(analyzer, load_image(first))
            if vectors is not None:
                gallery[person.name] = vectors
                probes += [(person.name, path) for path in others]
            update(done, len(people))
    probes += [("", p) for p in sorted((dataset / "unknown").glob("*/*")) if p.is_file()]
    names = list(gallery)
    out: dict[str, Any] = {"threshold": threshold, "people": len(names), "scales": {}}
    for scale in SCALES:
        truth: list[str] = []
        rows: dict[str, list[np.ndarray]] = {name: [] for name in WARPS}
        with progress_bar(f"warp: probes at scale {scale}") as update:
            for done, (truth_name, path) in enumerate(probes, start=1):
                vectors = _embedded(analyzer, shrink_into_frame(load_image(path), scale, path.name))
                if vectors is not None:
                    truth.append(truth_name)
                    for name in WARPS:
                        rows[name].append(vectors[name])
                update(done, len(probes))
        known = np.array([t != "" for t in truth])
        expected = np.array([names.index(t) if t else -1 for t in truth])
        named: dict[str, np.ndarray] = {}
        result: dict[str, Any] = {"known": int(known.sum()), "strangers": int((~known).sum()), "warps": {}}
        pairs = [(name, name, name) for name in WARPS] + [(MIXED, "bilinear", "bicubic (shipped)")]
        for label, gallery_warp, probe_warp in pairs:
            scores = np.stack(rows[probe_warp]) @ np.stack([gallery[n][gallery_warp] for n in names]).T
            passes = scores.max(axis=1) >= threshold
            named[label] = passes & (scores.argmax(axis=1) == expected)
            result["warps"][label] = {
                "known_named": wilson(int(named[label][known].sum()), int(known.sum())),
                "strangers_named": int(passes[~known].sum()),
            }
        for label in result["warps"]:
            result["warps"][label]["gained"] = int((named[label] & ~named["bilinear"])[known].sum())
            result["warps"][label]["lost"] = int((~named[label] & named["bilinear"])[known].sum())
        out["scales"][str(scale)] = result
    return out


def report(data: dict[str, Any]) -> str:
    ms = data["cost"]["ms_per_face"]
    rows = [
        [name, f"{ms[name]:.3f}", f"{ms[name] / ms['bilinear']:.1f}x", f"{ms[name] / ms['embedding']:.1%}"]
        for name in WARPS
    ]
    rows.append(["embedding one face (SFace, batch of 1)", f"{ms['embedding']:.2f}", "—", "100 %"])
    parts = [
        machine_line(COMMAND),
        "",
        f"Cost: {data['cost']['faces']} faces of ~23 and ~31 px (data/sample's photos shrunk into a 640x360"
        f" frame), median of {data['cost']['rounds']} interleaved rounds, one thread.",
        "",
        table(["warp", "ms per face", "vs bilinear", "vs embedding"], rows),
    ]
    acc = data.get("accuracy")
    if acc is None:
        parts += ["", f"Accuracy not measured: {data['skipped']}"]
        return "\n".join(parts)
    parts += [
        "",
        f"Accuracy: {acc['people']} known people of `{data['dataset']}` enrol their first photo, clean; every other"
        f" photo and every stranger's is a probe shrunk into a 640x360 frame (the `enrol1` protocols), detected"
        f" once and aligned with each warp; named at the default threshold {acc['threshold']}; 95 % Wilson"
        " intervals; gained / lost: known probes named right that bilinear does not name, and the reverse.",
        "",
    ]
    rows = []
    for scale, result in acc["scales"].items():
        for label, row in result["warps"].items():
            rate, low, high = row["known_named"]
            rows.append(
                [
                    f"{scale} ({result['known']} known / {result['strangers']} strangers)",
                    label,
                    f"{rate:.1%} [{low:.1%}-{high:.1%}]",
                    row["strangers_named"],
                    f"+{row['gained']} / -{row['lost']}",
                ]
            )
    parts.append(table(["probe scale", "warp", "known named", "strangers named", "vs bilinear"], rows))
    return "\n".join(parts)


@click.command()
@click.option("--rounds", default=5, show_default=True, help="Interleaved cost rounds; the median is reported")
@click.option("--dataset", type=click.Path(path_type=Path), default=DEFAULT_DATASET, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of writing BENCHMARKS.md")
def main(rounds: int, dataset: Path, as_json: bool) -> None:
    """Time each warp interpolation per face, and measure what it does to small faces on ``dataset``."""
    analyzer = create_analyzer(ModelSettings(), det_threshold=0.6, min_face=10)
    data: dict[str, Any] = {"cost": cost(analyzer, rounds), "dataset": str(dataset)}
    if (dataset / "known").is_dir() and (dataset / "unknown").is_dir():
        data["accuracy"] = accuracy(analyzer, dataset)
    else:
        data["skipped"] = f"no dataset at {dataset} (expected known/<person>/ and unknown/<person>/)"
        click.echo(data["skipped"], err=True)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    write_json("warp_cost", data)
    path = update_section("warp-cost", report(data))
    click.echo(report(data))
    click.echo(f"written {path}")


if __name__ == "__main__":
    main()
