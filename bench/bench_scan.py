"""Photo-library scan benchmark: photos/s of `facewire scan`'s engine on lfw-dev and on the video clips,
with 1 and N worker processes, beside decoding the same files alone (the same-run baseline).

    .venv/bin/python -m bench.bench_scan [--dataset ../shared/data] [--limit 800]
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from bench.common import write_json
from classifier_service.scan import ScannedFile, ScanSetup, photos, run_scan
from facewire.config import load_settings
from facewire.gallery_folder import load_gallery
from facewire.images import load_image
from facewire_console.demo import SAMPLE_DIR
from harness.processes import shared_data_dir


def timed_scan(files: list[Path], setup: ScanSetup, workers: int) -> tuple[float, int]:
    """(seconds, faces found) of one scan; model loading in the workers is included."""
    faces = 0

    def count(scanned: ScannedFile) -> None:
        nonlocal faces
        faces += len(scanned.line.get("faces", []))

    start = time.perf_counter()
    run_scan(files, setup, workers, count)
    return time.perf_counter() - start, faces


def decode_seconds(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            load_image(path)
    return time.perf_counter() - start


@click.command()
@click.option(
    "--dataset", type=click.Path(path_type=Path, file_okay=False), default=None, help="Default ../shared/data."
)
@click.option("--limit", type=int, default=800, show_default=True, help="lfw-dev photos scanned (0: all 3,221).")
@click.option("--workers", type=int, default=2, show_default=True)
def main(dataset: Path | None, limit: int, workers: int) -> None:
    """Scan photos/s with 1 and N workers; JSON into bench/results/scan.json."""
    root = dataset or shared_data_dir()
    if root is None:
        raise click.ClickException("../shared/data not found: pass --dataset DIR (with lfw-dev/ and video/)")
    settings = load_settings(None, {"classifier": {"gallery": SAMPLE_DIR / "lfw" / "known"}})
    gallery = load_gallery(settings)
    setup = ScanSetup(settings.model, gallery.embeddings, gallery.labels, settings.classifier_threshold(), 3, 20)
    files = photos(root / "lfw-dev")
    files = files[:limit] if limit else files
    videos = [p for p in photos(root / "video") if p.suffix.lower() in (".mp4", ".gif")]
    baseline = decode_seconds(files)
    rows = {}
    for count in sorted({1, workers}):
        seconds, faces = timed_scan(files, setup, count)
        rows[f"photos_{count}_workers"] = {"seconds": seconds, "photos_per_s": len(files) / seconds, "faces": faces}
    seconds, faces = timed_scan(videos, setup, workers)
    rows["videos"] = {"files": len(videos), "seconds": seconds, "faces": faces}
    data = {"photos": len(files), "decode_only_photos_per_s": len(files) / baseline, **rows}
    write_json("scan", data)
    best = rows[f"photos_{workers}_workers"]["photos_per_s"]
    print(
        f"{len(files)} lfw-dev photos: decode alone {len(files) / baseline:.0f}/s; scan 1 worker "
        f"{rows['photos_1_workers']['photos_per_s']:.1f}/s, {workers} workers {best:.1f}/s "
        f"-> 10,000 photos in {10000 / best / 60:.1f} min"
    )
    print(f"{len(videos)} clips (1 frame/s sampled): {seconds:.1f} s, {faces} faces")


if __name__ == "__main__":
    main()
