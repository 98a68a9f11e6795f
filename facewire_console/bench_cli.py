"""``facewire bench``: reproducible benchmarks writing bench/results/*.json and the tables of BENCHMARKS.md.

The benchmark code lives in the ``bench/`` folder of a source checkout (it uses the test helpers);
this module only parses options and imports it on demand.
"""

from __future__ import annotations

import importlib
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType

import click

from facewire.cli_common import fail_cleanly
from facewire.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def bench_module(name: str) -> ModuleType:
    """``bench.<name>`` from the source checkout this package runs from."""
    if (ROOT / "bench" / "__init__.py").is_file() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in ("bench", f"bench.{name}"):
            raise ConfigError("facewire bench needs a source checkout (the bench/ folder beside facewire/)") from exc
        raise


SUBCOMMANDS = ("accuracy", "edge", "wire", "classifier", "index-scale", "e2e", "chaos", "all")


def command_line() -> str:
    """``facewire bench <subcommand> <options>`` as typed (for the provenance line of each table)."""
    args = sys.argv[1:]
    start = next((i for i, arg in enumerate(args) if arg in SUBCOMMANDS), 0)
    return "facewire bench " + " ".join(shlex.quote(arg) for arg in args[start:])


@click.group()
def bench() -> None:
    """Benchmarks: JSON into bench/results/, tables into BENCHMARKS.md (each speed beside a same-run baseline)."""


@bench.command()
@click.option(
    "--dataset",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="DIR with known/<person>/*.jpg and unknown/<person>/*.jpg (default: lfw-dev in $FACEWIRE_SHARED_DATA).",
)
@click.option("--model", "models", multiple=True, help="Embedder id (repeatable; default: every one with weights).")
@click.option("--limit-people", type=int, default=None, help="Only the first N known and N unknown people.")
@click.option("--quick", is_flag=True, help="Same as the full run (embeddings are cached); kept for symmetry.")
@click.option(
    "--protocol",
    type=click.Choice(["all", "small"]),
    default=None,
    help="all: every harder protocol of issue 11; small: only the clean, ~37 px and ~23 px ones (issue 23).",
)
@click.option(
    "--max-probes-per-person",
    type=int,
    default=None,
    help="Probe with at most N photos of each known person, the same after every enrolment (strangers: all).",
)
@click.option("--enroll-per-person", type=int, default=None, help="Enrol the first N photos of each person.")
@click.option("--probe-scale", type=float, default=None, help="Shrink probes by S into a 640x360 frame.")
@click.option("--blur", type=int, default=None, help="Gaussian blur of the probes, K x K (K odd).")
@click.option("--jpeg-quality", type=int, default=None, help="Re-encode the probes as JPEG at quality Q.")
@click.option("--no-peer", is_flag=True, help="Do not run the face_recognition peer beside facewire.")
@fail_cleanly
def accuracy(
    dataset: Path | None,
    models: tuple[str, ...],
    limit_people: int | None,
    quick: bool,
    protocol: str | None = None,
    enroll_per_person: int | None = None,
    probe_scale: float | None = None,
    blur: int | None = None,
    jpeg_quality: int | None = None,
    no_peer: bool = False,
    max_probes_per_person: int | None = None,
) -> None:
    """Rank-1, TAR at FAR 1e-2/1e-3, rejection at the default threshold, LFW-style verification.

    With --protocol or a probe option: facewire and the face_recognition peer side by side per protocol.
    """
    if protocol or any(v is not None for v in (enroll_per_person, probe_scale, blur, jpeg_quality)):
        chosen = bench_module("accuracy_protocols").parse_protocols(
            protocol, enroll_per_person, probe_scale, blur, jpeg_quality
        )
        data = bench_module("accuracy_protocols").run(
            dataset or bench_module("accuracy").DEFAULT_DATASET,
            chosen,
            models[0] if models else "sface-2021dec",
            with_peer=not no_peer,
            limit_people=limit_people if limit_people is not None else (40 if quick else None),
            max_probes=max_probes_per_person,
        )
        full = protocol == "all" and max_probes_per_person is None and limit_people is None and not quick
        bench_module("accuracy_protocols_report").publish(data, command_line(), full)
        return
    module = bench_module("accuracy")
    report = bench_module("report")
    start = time.perf_counter()
    data = module.run(dataset or module.DEFAULT_DATASET, list(models) or module.models_with_weights(), limit_people)
    data["seconds"] = time.perf_counter() - start
    report.accuracy(data, command_line())


@bench.command()
@click.option("--quick", is_flag=True, help="Fewer combinations, 120 frames each.")
@click.option("--frames", type=int, default=None, help="Frames of the clip per run (default: all; 120 with --quick).")
@fail_cleanly
def edge(quick: bool, frames: int | None = None) -> None:
    """Frames/s per pipeline, detector and thread count over a naive OpenCV baseline; counts, names, ms per stage."""
    data = bench_module("edge").run(quick, frames)
    bench_module("report").edge(data, command_line())


@bench.command()
@click.option("--quick", is_flag=True, help="Fewer messages and frames.")
@click.option("--messages", type=int, default=None, help="Messages per rate measurement (5,000 quick, 20,000 full).")
@click.option("--frames", type=int, default=None, help="Frames of the clip whose faces are sized (60 quick, all full).")
@fail_cleanly
def wire(quick: bool, messages: int | None = None, frames: int | None = None) -> None:
    """Bytes per face (embedding message vs JPEG crop vs frame) and broker messages/s beside mosquitto's clients."""
    data = bench_module("wire").run(quick, messages, frames)
    bench_module("report").wire(data, command_line())


@bench.command()
@click.option("--quick", is_flag=True, help="Galleries up to 100k and fewer messages.")
@click.option("--sizes", default=None, help="Comma-separated gallery sizes (overrides the default list).")
@click.option("--messages", type=int, default=None, help="Embeddings pushed through the broker per run.")
@fail_cleanly
def classifier(quick: bool, sizes: str | None = None, messages: int | None = None) -> None:
    """Embeddings/s through a real broker by gallery size, index kind, batching and replicas; the seed's HTTP way."""
    gallery_sizes = [int(size) for size in sizes.split(",")] if sizes else None
    data = bench_module("classifier").run(quick, gallery_sizes, messages)
    bench_module("report").classifier(data, command_line())


@bench.command("index-scale")
@click.option("--quick", is_flag=True, help="Galleries of 10k and 60k rows only.")
@click.option("--sizes", default=None, help="Comma-separated gallery sizes (default: 1k to 1M).")
@fail_cleanly
def index_scale(quick: bool, sizes: str | None = None) -> None:
    """The index chosen by gallery size on lfw-dev faces among realistic distractors: speed against flat,
    recall@1, memory, adds and removes, strangers named as the gallery grows."""
    module = bench_module("index_scale")
    module.publish_run(module.parse_sizes(quick, sizes), command_line())


@bench.command()
@click.option("--quick", is_flag=True, help="Shorter runs per load level.")
@click.option("--seconds", type=float, default=None, help="Seconds per load level (6 quick, 20 full).")
@click.option("--max-rate", type=float, default=None, help="Stop the rising load at this many faces/s.")
@fail_cleanly
def e2e(quick: bool, seconds: float | None = None, max_rate: float | None = None) -> None:
    """Capture-to-result latency p50/p95/p99 with 1, 4, 16 simulated edge nodes, and the saturation point."""
    data = bench_module("e2e").run(quick, seconds, max_rate=max_rate)
    bench_module("report").e2e(data, command_line())


@bench.command()
@click.option("--minutes", type=float, default=2.0, show_default=True, help="Minutes of faults (then the drain).")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Faces per second the edge publishes.")
@fail_cleanly
def chaos(minutes: float, rate: float) -> None:
    """Broker kill -9, replica kill -9, edge cut off, malformed floods, slow subscribers: lost and duplicated."""
    module = bench_module("chaos")
    module.publish(module.run(minutes, rate), command_line())


# Smaller runs for the other engineers' benchmarks while they have no --quick of their own.
QUICK_FALLBACK = {"bench_models": ["--people", "10", "--frames", "30"]}


def quick_args(command: click.Command, fallback: list[str]) -> list[str]:
    """``--quick`` when the command has it, else the fallback options it accepts."""
    names = {param.name for param in command.params}
    if "quick" in names:
        return ["--quick"]
    pairs = zip(fallback[::2], fallback[1::2], strict=True)
    return [
        item for option, value in pairs if option.lstrip("-").replace("-", "_") in names for item in (option, value)
    ]


@bench.command("all")
@click.option("--quick", is_flag=True, help="The short version of every benchmark (under 10 minutes on 2 cores).")
@click.option("--dataset", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.pass_context
@fail_cleanly
def all_(ctx: click.Context, quick: bool, dataset: Path | None) -> None:
    """Every benchmark in turn (and bench_models / bench_recorder when present)."""
    started = time.perf_counter()
    ctx.invoke(accuracy, dataset=dataset, models=(), limit_people=None, quick=quick)
    for command in (edge, wire, classifier, index_scale, e2e):
        ctx.invoke(command, quick=quick)
    for extra in ("bench_models", "bench_recorder"):
        try:
            module = bench_module(extra)
        except ConfigError:
            continue
        except ImportError as exc:
            click.echo(f"skipping bench.{extra}: {exc}", err=True)
            continue
        main = getattr(module, "main", None)
        if isinstance(main, click.Command):
            click.echo(f"running bench.{extra}", err=True)
            args = quick_args(main, QUICK_FALLBACK.get(extra, [])) if quick else []
            try:
                main.main(args, standalone_mode=False)
            except Exception as exc:  # another engineer's benchmark failing must not hide ours
                click.secho(f"bench.{extra} failed: {exc}", fg="red", err=True)
    click.echo(f"all benchmarks done in {time.perf_counter() - started:.0f} s", err=True)


if __name__ == "__main__":
    bench()
