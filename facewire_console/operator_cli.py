"""Operator tools from the seed systems: ``facewire identify``, ``facewire extract``, ``facewire scan``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from edge_agent.extract import ExtractOptions, collect_tracks, merge_same_person, write_tracks
from facewire.cli_common import common_options, fail_cleanly, settings_from
from facewire.config import Settings
from facewire.errors import ConfigError, FacewireError
from facewire.faces import create_analyzer
from facewire.gallery_folder import load_gallery
from facewire.images import load_image
from facewire.progress import progress_bar

if TYPE_CHECKING:
    from classifier_service.matcher import Matcher

# The classifier's modules (FAISS, the `server` extra) are imported inside identify and scan:
# `facewire extract` runs on an edge install.


def gallery_matcher(settings: Settings, folder: Path | None, instance: str) -> Matcher:
    """The matcher of an enrolment folder (``--gallery``), else of the classifier replica's gallery store
    (what was enrolled from the folder, the CLI and over MQTT), read without changing it."""
    from classifier_service.gallery.setup import open_manager
    from classifier_service.matcher import Matcher
    from classifier_service.quality import cohort_for

    conf = settings.classifier
    if folder is not None:
        gallery = load_gallery(settings)
        cohort = cohort_for(gallery.model_id, conf)
        return Matcher(gallery.embeddings, gallery.labels, settings.classifier_threshold(), conf.top_k, cohort=cohort)
    manager = open_manager(settings, instance)
    try:
        manager.restore()
    finally:
        manager.store.close()
    if not manager.matcher.labels:
        raise ConfigError(
            f"the gallery store of replica {instance!r} is empty: enrol people first (facewire enroll), "
            "or pass --gallery DIR to use an enrolment folder"
        )
    return manager.matcher


def matcher_rows(matcher: Matcher) -> tuple[np.ndarray, list[str]]:
    """The indexed vectors and their labels, to rebuild the matcher in another process."""
    return matcher.index.reconstruct_n(0, matcher.index.ntotal), matcher.labels


GALLERY_OPTION = click.option(
    "--gallery",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Enrolment folder GALLERY/<person>/*.jpg (default: the classifier replica's gallery store).",
)
INSTANCE_OPTION = click.option(
    "--instance",
    default="",
    help="Classifier replica whose gallery store is read (default: this host's name, a replica run without one).",
)


@click.command()
@common_options
@click.argument("photos_", metavar="PHOTO...", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@GALLERY_OPTION
@INSTANCE_OPTION
@click.option("--top-k", type=int, default=3, show_default=True, help="Candidates shown per face.")
@click.option("--remote", is_flag=True, help="Ask the running classifiers over MQTT (facewire/identify/req).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="With --remote: seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="JSON output for scripts.")
@fail_cleanly
def identify(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    photos_: tuple[Path, ...],
    gallery: Path | None,
    instance: str,
    top_k: int,
    remote: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Every face in each PHOTO: its box, the nearest enrolled people and the decision."""
    from classifier_service.identify import identify_image
    from classifier_service.identify_service import request_identify

    settings = settings_from(config_file, broker_url, verbose, classifier={"gallery": gallery})
    report: list[dict[str, Any]] = []
    if remote:
        answer = request_identify(settings.mqtt, [load_image(p) for p in photos_], top_k, timeout)
        if not answer.ok:
            raise FacewireError(f"the classifier refused the request: {answer.error}")
        report = [
            {"file": str(p), "faces": [face.to_dict() for face in faces]}
            for p, faces in zip(photos_, answer.results, strict=True)
        ]
    else:
        matcher = gallery_matcher(settings, gallery, instance)
        analyzer = create_analyzer(settings.model, det_threshold=0.6, min_face=20)
        for path in photos_:
            faces = identify_image(analyzer, matcher, load_image(path))
            report.append({"file": str(path), "faces": [f.to_dict() for f in faces]})
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table("file", "box (x,y,w,h)", "name", "score", f"top {top_k}")
    for entry in report:
        for face in entry["faces"]:
            style = "green" if face["known"] else "red"
            tops = ", ".join(f"{c['name']} {c['score']:.2f}" for c in face["candidates"][:top_k])
            box = ",".join(str(int(v)) for v in face["bbox"])
            table.add_row(Path(entry["file"]).name, box, f"[{style}]{face['name']}[/]", f"{face['score']:.3f}", tops)
        if not entry["faces"]:
            table.add_row(Path(entry["file"]).name, "-", "[dim]no face[/]", "", "")
    Console().print(table)


@click.command()
@common_options
@click.argument("source", metavar="VIDEO_OR_DIR")
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--min-face", type=int, default=40, show_default=True, help="Smallest face side in pixels.")
@click.option("--max-per-track", type=int, default=5, show_default=True, help="Best crops kept per face.")
@click.option("--target-fps", type=float, default=5.0, show_default=True, help="Frames per second examined (0: all).")
@click.option("--originals", is_flag=True, help="Also write unaligned crops with some margin.")
@click.option("--no-merge", is_flag=True, help="Keep tracks of one person separate.")
@fail_cleanly
def extract(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    source: str,
    out_dir: Path,
    min_face: int,
    max_per_track: int,
    target_fps: float,
    originals: bool,
    no_merge: bool,
) -> None:
    """Aligned crops of every distinct face in VIDEO_OR_DIR, one folder per face, ready to rename and enrol."""
    settings = settings_from(config_file, broker_url, verbose)
    options = ExtractOptions(min_face, max_per_track, target_fps, originals=originals)
    analyzer = create_analyzer(settings.model, det_threshold=0.7, min_face=min_face)
    with progress_bar(f"extracting {source}") as update:
        tracks = collect_tracks(analyzer, source, options, lambda index: update(index + 1, 0))
    is_video = not Path(source).is_dir()
    kept = {k: v for k, v in tracks.items() if v[0] >= (options.min_track_frames if is_video else 1)}
    if is_video and not no_merge:
        kept = merge_same_person(kept, min_cosine=settings.classifier_threshold() + 0.05)
    index: list[dict[str, Any]] = write_tracks(kept, out_dir, min_frames=1)
    click.echo(f"{len(index)} faces, {sum(len(e['crops']) for e in index)} crops in {out_dir}", err=True)


COMMANDS = [identify, extract]
