"""Markdown tables of the model benchmark (bench/bench_models.py) for docs/models.md."""

from __future__ import annotations

from typing import Any

from bench.common import table


def _cell(value: Any, suffix: str = "") -> str:
    return "–" if value is None else f"{value}{suffix}"


def embedder_table(rows: list[dict[str, Any]]) -> str:
    return table(
        ["embedder", "file MB", "ms/face (batch 1)", "ms/face (batch 8)", "speed vs fp32", "cosine vs fp32 mean / min"],
        [
            [
                f"{r['family']}: {r['variant']}",
                _cell(r["file_mb"]),
                r["ms_per_face"],
                _cell(r["ms_per_face_batch8"]),
                f"{r['speed_vs_fp32']}x",
                f"{r['cosine_vs_fp32_mean']:.5f} / {r['cosine_vs_fp32_min']:.5f}",
            ]
            for r in rows
        ],
    )


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    return table(
        ["SFace variant", "enrolled / probes", "rank-1", "same name as fp32"],
        [
            [r["variant"], f"{r['enrolled']} / {r['probes']}", f"{r['rank1']:.2%}", f"{r['same_as_fp32']:.2%}"]
            for r in rows
        ],
    )


def render(data: dict[str, Any], provenance: str) -> str:
    """The whole bench:models section."""
    mesh = data["facemesh_ms_per_crop"]
    parts = [
        provenance,
        f"Embedders on {data['faces']} real faces of {data['people']} LFW-dev people (YuNet boxes; SFace on "
        "5-point aligned 112x112 crops, CLIP on 224x224 seed-style crops with the Face Mesh mask), one thread. "
        "CLIP has random weights here (the exact ViT-B/32 architecture): its speed and fp32/int8 agreement are "
        "real, its accuracy would not be, so it has none.",
        embedder_table(data["embedders"]),
        "Identification with real weights (SFace), each person's first 5 photos enrolled:",
        accuracy_table(data["accuracy"]),
        "Detectors on the first frames of `data/sample/short_hamilton_clip.mp4` (640x360); "
        f"Face Mesh mask: {_cell(mesh, ' ms')} per 224x224 crop.",
        table(
            ["detector", "ms/frame", "faces/frame"],
            [[r["detector"], r["ms_per_frame"], r["faces_per_frame"]] for r in data["detectors"]],
        ),
        "Whole analyzers on the same frames (detect, align or crop, mask, embed every face; no tracking or dedup):",
        table(
            ["pipeline", "frames/s", "ms/frame", "faces/frame", "fps vs default"],
            [
                [
                    r["pipeline"],
                    r["fps"],
                    r["ms_per_frame"],
                    r["faces_per_frame"],
                    f"{r['fps'] / data['pipelines'][0]['fps']:.2f}x",
                ]
                for r in data["pipelines"]
            ],
        ),
    ]
    return "\n\n".join(parts)
