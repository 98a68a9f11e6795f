"""``facewire models``: list the registry, export CLIP (``export-clip``, also ``python models/export_clip_onnx.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from facewire.cli_common import fail_cleanly
from facewire.models.export_clip import DEFAULT_SOURCE, RANDOM_CONFIGS, ExportReport
from facewire.models.registry import DETECTORS, EMBEDDERS, exported_model


@click.group()
def models() -> None:
    """Model registry and export tools."""


@models.command("list")
@click.argument("onnx_files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@fail_cleanly
def list_models(onnx_files: tuple[Path, ...]) -> None:
    """Registered embedders and detectors, and what exported ONNX_FILES say about themselves."""
    specs = [spec for spec in EMBEDDERS.values()] + [exported_model(path)[0] for path in onnx_files]
    for spec in specs:
        preparation = "5-point alignment" if spec.needs_alignment else f"crop rule (margin {spec.crop_margin})"
        click.echo(
            f"embedder  {spec.id}: {spec.family} {spec.variant}, {spec.dim}-d, {spec.input_size}px "
            f"{'RGB' if spec.rgb else 'BGR'}, {preparation}{', masked crops' if spec.wants_mask else ''}"
        )
    for name, detector in DETECTORS.items():
        extra = f" [needs the {detector.extra} extra]" if detector.extra else ""
        click.echo(f"detector  {name}: {detector.description}{extra}")


@models.command("export-clip")
@click.argument("source", default=DEFAULT_SOURCE)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("exported"),
    show_default=True,
    help="Folder for NAME.onnx, NAME.int8.onnx and SHA256SUMS.",
)
@click.option("--name", default=None, help="File stem and model-id prefix (default: from SOURCE).")
@click.option(
    "--random-init",
    type=click.Choice(sorted(RANDOM_CONFIGS)),
    default=None,
    help="Ignore SOURCE's weights: a randomly initialised model of this config (tests, benchmarks).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random-init.")
@click.option("--int8/--no-int8", default=True, show_default=True, help="Also write a dynamic int8 variant.")
@click.option("--atol", type=float, default=1e-3, show_default=True, help="Max abs diff torch vs ONNX allowed.")
@fail_cleanly
def export_clip_command(
    source: str, output: Path, name: str | None, random_init: str | None, seed: int, int8: bool, atol: float
) -> None:
    """Export the CLIP image encoder of SOURCE (hub id or local folder) to ONNX, with parity check and metadata.

    SOURCE defaults to openai/clip-vit-base-patch32; without network, pass a local folder holding
    config.json and the weights (a hub snapshot or the output of save_pretrained).
    """
    from facewire.models.export_clip import export_clip, load_model

    started = time.monotonic()
    loaded = load_model(source, random_init=random_init, seed=seed)
    click.echo(f"loaded {loaded.source} (revision {loaded.revision}) in {time.monotonic() - started:.1f} s", err=True)
    report = export_clip(
        loaded, output, name=name or ("clip-" + random_init if random_init else None), int8=int8, atol=atol
    )
    print_report(report, time.monotonic() - started)


def print_report(report: ExportReport, seconds: float) -> None:
    """The parity numbers and files of an export, one line each."""
    click.echo(f"model id      {report.model_id}")
    click.echo(f"parity fp32   max abs diff {report.max_abs_diff:.3g}, min cosine {report.min_cosine:.7f}")
    if report.int8_min_cosine is not None:
        click.echo(f"parity int8   min cosine {report.int8_min_cosine:.5f}, mean {report.int8_mean_cosine:.5f}")
    for file_name, size in report.sizes.items():
        click.echo(f"wrote         {report.fp32.parent / file_name} ({size / 1e6:.1f} MB)")
    click.echo(f"manifest      {report.manifest}")
    click.echo(f"done in {seconds:.1f} s")
