"""Model benchmark: embedders fp32 vs int8 (speed, size, agreement, LFW accuracy), detectors per frame,
and the seed's pipeline (Haar + Face Mesh + CLIP ViT-B/32) against the default (YuNet + alignment + SFace).

    .venv/bin/python -m bench.bench_models [--people 40] [--frames 120] [--clip-dir DIR]

Real faces from ../shared/data/lfw-dev. CLIP weights cannot be downloaded here: without --clip-dir the
exact ViT-B/32 architecture is exported with random weights (speed and int8 agreement are meaningful,
identification accuracy is not, so it is not reported for CLIP). One thread per model (fastest on 2 cores).
Writes bench/results/models.json and the tables between the bench:models markers of docs/models.md.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from bench.common import machine_line, update_section, write_json
from bench.models_data import Crops, collect_crops, identification, shared_lfw, video_frames
from facewire.config import ModelSettings
from facewire.faces import FaceAnalyzer, create_analyzer, create_detector
from facewire.models.embedder import OnnxEmbedder, l2_normalise
from facewire.models.export_clip import quantize_int8
from facewire.models.mediapipe_faces import FaceMeshMasker, mediapipe_available
from facewire.models.registry import SFACE, exported_model, folded_model, package_file

DOC = Path(__file__).resolve().parent.parent / "docs" / "models.md"
Embed = Callable[[Sequence[np.ndarray]], np.ndarray]


def timed(embed: Embed, crops: Sequence[np.ndarray], batch: int = 1) -> tuple[np.ndarray, float]:
    """Embeddings of all ``crops`` and the mean ms per face, in batches of ``batch``."""
    embed(crops[:batch])  # warm-up
    start = time.perf_counter()
    vectors = np.concatenate([embed(crops[i : i + batch]) for i in range(0, len(crops), batch)])
    return vectors, (time.perf_counter() - start) * 1000 / len(crops)


def opencv_sface() -> Embed:
    """The shipped int8 block-quantised SFace run by OpenCV (what cv2.FaceRecognizerSF users get)."""
    assert SFACE.file is not None
    recognizer = cv2.FaceRecognizerSF.create(str(package_file(SFACE.file)), "")
    return lambda crops: l2_normalise(np.stack([recognizer.feature(c).ravel() for c in crops]))


def sface_variants(workdir: Path, cache: Path) -> list[tuple[str, Path | None, Embed]]:
    """(name, file, embed) for SFace: folded fp32, dynamic int8 (s8 and u8 weights), OpenCV on the shipped file."""
    assert SFACE.file is not None
    fp32 = folded_model(SFACE.file, cache, dynamic_batch=True)
    variants: list[tuple[str, Path | None, Embed]] = [("sface fp32 (folded, onnxruntime)", fp32, sface(fp32))]
    for label, unsigned in (("int8 s8", False), ("int8 u8", True)):
        target = workdir / f"sface.{label.replace(' ', '-')}.onnx"
        quantize_int8(fp32, target, unsigned=unsigned)
        variants.append((f"sface dynamic {label} (onnxruntime)", target, sface(target)))
    variants.append(("sface int8 block-quantised (OpenCV dnn)", package_file(SFACE.file), opencv_sface()))
    return variants


def sface(path: Path) -> Embed:
    return OnnxEmbedder(path, SFACE, threads=1).embed


def embedder_rows(name: str, variants: list[tuple[str, Path | None, Embed]], crops: list[np.ndarray]) -> list[dict]:
    """Speed, size and agreement with the first (fp32) variant, per variant."""
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for label, path, embed in variants:
        vectors, ms = timed(embed, crops)
        _, ms_batch = timed(embed, crops, batch=8) if "OpenCV" not in label else (None, None)
        reference = vectors if reference is None else reference
        agreement = (reference * vectors).sum(axis=1)
        rows.append(
            {
                "family": name,
                "variant": label,
                "file_mb": round(path.stat().st_size / 1e6, 1) if path else None,
                "ms_per_face": round(ms, 1),
                "ms_per_face_batch8": None if ms_batch is None else round(ms_batch, 1),
                "speed_vs_fp32": round(rows[0]["ms_per_face"] / ms, 2) if rows else 1.0,
                "cosine_vs_fp32_mean": round(float(agreement.mean()), 5),
                "cosine_vs_fp32_min": round(float(agreement.min()), 5),
                "faces": len(crops),
                "vectors": vectors,
            }
        )
    return rows


def clip_variants(clip_dir: Path | None, workdir: Path) -> list[tuple[str, Path | None, Embed]]:
    """CLIP ViT-B/32 fp32 and int8 from ``clip_dir``, or a random-weight export made now."""
    if clip_dir is None:
        from facewire.models.export_clip import export_clip, load_model

        clip_dir = workdir / "clip"
        export_clip(load_model("", random_init="vit-b32"), clip_dir, name="clip-vit-b32")
        click.echo(f"exported a random-weight ViT-B/32 to {clip_dir}", err=True)
    files = sorted(clip_dir.glob("*.onnx"), key=lambda p: ".int8." in p.name)
    variants: list[tuple[str, Path | None, Embed]] = []
    for path in files:
        spec, _ = exported_model(path)
        variants.append((f"{spec.id} ({spec.variant})", path, OnnxEmbedder(path, spec, threads=1).embed))
    return variants


def detector_rows(frames: list[np.ndarray]) -> list[dict[str, Any]]:
    """ms per frame and faces found per frame of each detector on the clip."""
    rows = []
    for name in ("yunet", "haar", "mediapipe"):
        if name == "mediapipe" and not mediapipe_available():
            continue
        detector = create_detector(ModelSettings(detector=name), score_threshold=0.7)
        detector.detect(frames[0])
        start = time.perf_counter()
        found = sum(len(detector.detect(frame)) for frame in frames)
        ms = (time.perf_counter() - start) * 1000 / len(frames)
        rows.append({"detector": name, "ms_per_frame": round(ms, 1), "faces_per_frame": round(found / len(frames), 2)})
    return rows


def mask_ms(crops: list[np.ndarray]) -> float | None:
    """Face Mesh mask ms per 224x224 face crop."""
    if not mediapipe_available():
        return None
    masker = FaceMeshMasker()
    masker.mask(crops[0])
    start = time.perf_counter()
    for crop in crops:
        masker.mask(crop)
    return round((time.perf_counter() - start) * 1000 / len(crops), 1)


def pipeline_rows(frames: list[np.ndarray], clip_files: list[Path], cache: Path) -> list[dict[str, Any]]:
    """Frames/s of whole analyzers (detect, align or crop, mask, embed every face) on the same frames."""
    mask = "facemesh" if mediapipe_available() else "none"
    setups = [("default: yunet + align + sface", ModelSettings(cache_dir=cache))]
    setups += [
        (f"seed: haar + {mask} + {path.name}", ModelSettings(embedder=str(path), detector="haar", mask=mask))
        for path in clip_files
    ]
    rows = []
    for label, settings in setups:
        analyzer: FaceAnalyzer = create_analyzer(settings, det_threshold=0.7, min_face=40)
        analyzer.analyze(frames[0])
        start = time.perf_counter()
        faces = sum(len(analyzer.analyze(frame)) for frame in frames)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "pipeline": label,
                "fps": round(len(frames) / seconds, 2),
                "faces_per_frame": round(faces / len(frames), 2),
                "ms_per_frame": round(seconds * 1000 / len(frames), 1),
            }
        )
    return rows


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "vectors"} for row in rows]


@click.command()
@click.option("--people", type=int, default=40, show_default=True, help="LFW-dev people (>= 10 photos each) used.")
@click.option("--frames", type=int, default=120, show_default=True, help="Clip frames per detector and pipeline.")
@click.option("--clip-dir", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None)
def main(people: int, frames: int, clip_dir: Path | None) -> None:
    """Run every measurement, print the tables, write JSON and docs/models.md."""
    from bench.models_report import render

    command = "python -m bench.bench_models" + (f" --people {people}" if people != 40 else "")
    command += f" --frames {frames}" if frames != 120 else ""
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        workdir = Path(tmp)
        cache = workdir / "cache"
        crops: Crops = collect_crops(shared_lfw(), people)
        click.echo(f"{len(crops.labels)} LFW faces of {people} people", err=True)
        sface_rows = embedder_rows("SFace", sface_variants(workdir, cache), crops.aligned)
        accuracy = [identification(row["variant"], row["vectors"], crops) for row in sface_rows]
        for result in accuracy:
            same = [a == b for a, b in zip(result["names"], accuracy[0]["names"], strict=True)]  # type: ignore[call-overload]
            result["same_as_fp32"] = round(sum(same) / len(same), 4)
        for result in accuracy:
            del result["names"]
        clips = clip_variants(clip_dir, workdir)
        clip_rows = embedder_rows("CLIP ViT-B/32", clips, crops.clip)
        clip_frames = video_frames(frames)
        data = {
            "faces": len(crops.labels),
            "people": people,
            "embedders": strip(sface_rows) + strip(clip_rows),
            "accuracy": accuracy,
            "facemesh_ms_per_crop": mask_ms(crops.unmasked[:100]),
            "detectors": detector_rows(clip_frames),
            "pipelines": pipeline_rows(clip_frames, [p for _l, p, _e in clips if p is not None], cache),
        }
    write_json("models", data)
    body = render(data, machine_line(command))
    click.echo(body)
    update_section("models", body, DOC)


if __name__ == "__main__":
    main()
