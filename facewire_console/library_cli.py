"""A scanned photo library as people: ``scan --cluster`` / ``--recluster`` / ``--name-cluster`` and ``facewire search``.

``facewire scan`` keeps every face it finds, with its embedding, in a face index beside
its report (:mod:`classifier_service.library`); this module clusters that index into
people, writes a contact sheet per cluster, enrols a cluster under a name and finds
the library photos most like a given face.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.config import Settings
from facewire.errors import ConfigError, FacewireError, ImageError
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire.progress import progress_bar
from facewire_console.operator_cli import GALLERY_OPTION, INSTANCE_OPTION, gallery_matcher, matcher_rows

if TYPE_CHECKING:
    from classifier_service.library import FaceIndex, LibraryFace

SHEET_FACES = 36  # a 6 x 6 contact sheet per cluster
SHEET_TILE = 96


def index_path(report: Path) -> Path:
    """The face index kept beside a scan report (``.facewire-scan.jsonl`` -> ``.facewire-faces.sqlite``)."""
    if report.name == ".facewire-scan.jsonl":
        return report.with_name(".facewire-faces.sqlite")
    return report.with_suffix(".faces.sqlite")


def cluster_library(index: FaceIndex, join_cosine: float, recluster: bool) -> dict[str, Any]:
    """Cluster the index's faces (keeping earlier clusters with ``recluster``), store and describe them."""
    from classifier_service.library_clusters import NOISE, cluster_faces, cluster_person
    from classifier_service.library_clusters import recluster as fold_in

    faces = index.faces()
    vectors = index.vectors()
    labels = (
        fold_in(vectors, [f.cluster for f in faces], join_cosine) if recluster else cluster_faces(vectors, join_cosine)
    )
    index.set_clusters({face.id: int(label) for face, label in zip(faces, labels, strict=True)})
    members: dict[int, list[LibraryFace]] = {}
    for face, label in zip(faces, labels, strict=True):
        members.setdefault(int(label), []).append(face)
    clusters = [
        {
            "id": label,
            "faces": [_face_entry(face) for face in group],
            "person": cluster_person([f.name for f in group], [f.known for f in group]),
        }
        for label, group in sorted(members.items(), key=lambda item: (-len(item[1]), item[0]))
        if label != NOISE
    ]
    return {"clusters": clusters, "noise": [_face_entry(face) for face in members.get(NOISE, [])]}


def _face_entry(face: LibraryFace) -> dict[str, Any]:
    return {"file": face.file, "bbox": [round(v, 1) for v in face.bbox], "score": round(face.det, 4)}


def face_crop(file: str, bbox: list[float], size: int, margin: float = 0.2) -> np.ndarray | None:
    """A square crop of one face (with ``margin`` around its box), ``size`` pixels wide; None if unreadable."""
    try:
        image = load_image(Path(file))
    except ImageError:
        return None
    x, y, w, h = bbox
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(image.shape[1], cx + side / 2)), int(min(image.shape[0], cy + side / 2))
    if right <= left or bottom <= top:
        return None
    return cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)


def write_contact_sheets(clusters: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One JPEG per cluster (``cluster-<id>.jpg``): up to 36 of its faces in a 6 x 6 grid."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cluster in clusters:
        crops = (face_crop(f["file"], f["bbox"], SHEET_TILE) for f in cluster["faces"][:SHEET_FACES])
        tiles = [crop for crop in crops if crop is not None]
        if not tiles:
            continue
        columns = min(6, len(tiles))
        rows = -(-len(tiles) // columns)
        sheet = np.full((rows * SHEET_TILE, columns * SHEET_TILE, 3), 255, dtype=np.uint8)
        for i, tile in enumerate(tiles):
            r, c = divmod(i, columns)
            sheet[r * SHEET_TILE : (r + 1) * SHEET_TILE, c * SHEET_TILE : (c + 1) * SHEET_TILE] = tile
        path = out_dir / f"cluster-{cluster['id']}.jpg"
        if not cv2.imwrite(str(path), sheet):
            raise FacewireError(f"cannot write {path}")
        written.append(path)
    return written


def print_clusters(found: dict[str, Any]) -> None:
    table = Table("cluster", "faces", "person", "photos (first 3)")
    for cluster in found["clusters"]:
        files = sorted({Path(f["file"]).name for f in cluster["faces"]})
        table.add_row(str(cluster["id"]), str(len(cluster["faces"])), cluster["person"] or "-", ", ".join(files[:3]))
    Console().print(table)
    click.echo(f"{len(found['clusters'])} clusters, {len(found['noise'])} faces in no cluster", err=True)


def name_cluster(settings: Settings, index: FaceIndex, cluster: int, person: str) -> int:
    """Enrol every face of library cluster ``cluster`` as ``person`` on the classifiers; returns faces enrolled."""
    from classifier_service.gallery.cli import GalleryTarget, send_embeddings
    from facewire.models.registry import resolve_embedder
    from facewire.schema.gallery import valid_person

    subject = valid_person(person)
    faces = index.faces()
    chosen = [i for i, face in enumerate(faces) if face.cluster == cluster]
    if not chosen:
        raise ConfigError(f"no cluster {cluster} in {index.path}: run `facewire scan ROOT --cluster` first")
    vectors = index.vectors()
    items = [(Path(faces[i].file), vectors[i]) for i in chosen]
    model = resolve_embedder(settings.model.embedder, settings.model.cache_dir)[0].id
    enrolled, _refused = send_embeddings(GalleryTarget(settings, False, "", 1, None), model, {subject: items})
    return enrolled


@click.command()
@common_options
@click.argument("photo", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--library", "root", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Scan report of LIBRARY.")
@click.option("--top", type=int, default=20, show_default=True, help="Photos to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def search(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    photo: Path,
    root: Path,
    report: Path | None,
    top: int,
    as_json: bool,
) -> None:
    """The LIBRARY photos with the faces most like the largest face in PHOTO, enrolled or not.

    LIBRARY must have been scanned (``facewire scan LIBRARY``); new photos are found by scanning again.
    """
    from classifier_service.library import FaceIndex

    settings = settings_from(config_file, broker_url, verbose)
    path = index_path(report or root / ".facewire-scan.jsonl")
    if not path.exists():
        raise ConfigError(f"{root} has no face index ({path.name}): run `facewire scan {root}` first")
    analyzer = create_analyzer(settings.model, det_threshold=0.6, min_face=20)
    faces = sorted(analyzer.faces(load_image(photo)), key=lambda f: -f.size)
    if not faces:
        raise FacewireError(f"no face found in {photo}")
    analyzer.embed(faces[:1])
    probe = np.asarray(faces[0].embedding, dtype=np.float32)
    probe /= np.linalg.norm(probe)
    index = FaceIndex(path)
    try:
        library_faces, vectors = index.faces(), index.vectors()
    finally:
        index.close()
    if not library_faces:
        raise ConfigError(f"the face index of {root} is empty")
    scores = vectors @ probe
    best: dict[str, tuple[float, LibraryFace]] = {}
    for face, score in zip(library_faces, scores.tolist(), strict=True):
        if face.file not in best or score > best[face.file][0]:
            best[face.file] = (score, face)
    ranked = sorted(best.values(), key=lambda item: -item[0])[:top]
    answer = [
        {"file": f.file, "score": round(s, 4), "bbox": [round(v, 1) for v in f.bbox], "name": f.name} for s, f in ranked
    ]
    if as_json:
        click.echo(json.dumps({"photo": str(photo), "matches": answer}))
        return
    table = Table("score", "photo", "named")
    for score, face in ranked:
        table.add_row(f"{score:.3f}", face.file, face.name)
    Console().print(table)


@click.command()
@common_options
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@GALLERY_OPTION
@INSTANCE_OPTION
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="JSON-lines report (default ROOT/.facewire-scan.jsonl); an existing one is resumed.",
)
@click.option(
    "--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Also write CSV."
)
@click.option("--workers", type=int, default=os.cpu_count() or 1, show_default=True, help="Processes.")
@click.option("--dry-run", is_flag=True, help="List what would be scanned and stop.")
@click.option("--min-face", type=int, default=20, show_default=True)
@click.option("--cluster", is_flag=True, help="Group every face of the library into people (enrolled or not).")
@click.option("--recluster", is_flag=True, help="Like --cluster, folding new faces into the earlier clusters.")
@click.option("--out", "sheets", type=click.Path(path_type=Path, file_okay=False), default=None, help="Contact sheets.")
@click.option("--name-cluster", nargs=2, default=None, metavar="CLUSTER PERSON", help="Enrol a cluster as PERSON.")
@click.option(
    "--every", default=None, metavar="INTERVAL", help="Scan again every INTERVAL (e.g. 10m, 1h) until stopped."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the clusters with --cluster).")
@fail_cleanly
def scan(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    root: Path,
    gallery: Path | None,
    instance: str,
    report: Path | None,
    csv_path: Path | None,
    workers: int,
    dry_run: bool,
    min_face: int,
    cluster: bool,
    recluster: bool,
    sheets: Path | None,
    name_cluster: tuple[str, str] | None,
    every: str | None,
    as_json: bool,
) -> None:
    """Recognise the faces in every photo under ROOT: a line per file, a summary per person.

    Every face is also kept in a face index beside the report, for ``--cluster`` and ``facewire search``.
    """
    from classifier_service.library import FaceIndex

    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    settings = settings_from(config_file, broker_url, verbose, classifier={"gallery": gallery})
    report = report or root / ".facewire-scan.jsonl"
    if name_cluster is not None:
        index = FaceIndex(index_path(report))
        try:
            enrolled = name_cluster_command(settings, index, name_cluster)
        finally:
            index.close()
        click.echo(json.dumps({"enrolled": enrolled}) if as_json else f"{enrolled} faces enrolled", err=not as_json)
        return
    interval = parse_interval(every) if every else 0.0
    stop = stop_event_on_signals() if interval else None
    while True:
        job = ScanJob(settings, root, report, gallery, instance, workers, min_face)
        lines = job.run(dry_run)
        if dry_run:
            return
        if csv_path:
            write_csv(lines, csv_path)
        found = job.clusters(recluster) if cluster or recluster else None
        if found is not None and sheets is not None:
            write_contact_sheets(found["clusters"], sheets)
        if as_json:
            click.echo(json.dumps(found if found is not None else {"files": lines}))
        elif found is not None:
            print_clusters(found)
        else:
            print_people(lines)
        if stop is None or stop.wait(interval):
            return


def name_cluster_command(settings: Settings, index: FaceIndex, chosen: tuple[str, str]) -> int:
    cluster, person = chosen
    if not cluster.lstrip("-").isascii() or not cluster.lstrip("-").isdigit():
        raise click.UsageError(f"--name-cluster takes a cluster number as listed by --cluster, not {cluster!r}")
    return name_cluster(settings, index, int(cluster), person)


def parse_interval(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``2h`` or ``1d`` (a plain number is seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise click.UsageError(f"--every takes an interval like 30s, 10m or 2h, not {text!r}") from None
    if not seconds > 0:
        raise click.UsageError("--every must be longer than 0")
    return seconds


class ScanJob:
    """One pass over a library: scan what is new into the report and the face index."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        report: Path,
        gallery: Path | None,
        instance: str,
        workers: int,
        min_face: int,
    ) -> None:
        self.settings = settings
        self.root = root
        self.report = report
        self.gallery = gallery
        self.instance = instance
        self.workers = workers
        self.min_face = min_face

    def run(self, dry_run: bool) -> list[dict[str, Any]]:
        """Scan the files not yet in the report and the face index; returns every file's latest line."""
        from classifier_service.library import FaceIndex
        from classifier_service.scan import ScannedFile, ScanSetup, already_done, photos, run_scan

        index = FaceIndex(index_path(self.report))
        try:
            done = already_done(self.report) & index.files()
            todo = [p for p in photos(self.root) if str(p) not in done]
            click.echo(f"{len(todo)} photos to scan ({len(done)} already in {self.report})", err=True)
            if dry_run:
                for path in todo:
                    click.echo(str(path))
                return []
            if todo:
                matcher = gallery_matcher(self.settings, self.gallery, self.instance)
                vectors, labels = matcher_rows(matcher)
                setup = ScanSetup(self.settings.model, vectors, labels, matcher.threshold, matcher.top_k, self.min_face)
                with self.report.open("a") as out, progress_bar("scanning") as update:
                    count = 0

                    def record(scanned: ScannedFile) -> None:
                        nonlocal count
                        index.add(str(scanned.line["file"]), scanned.line["faces"], scanned.vectors)
                        out.write(json.dumps(scanned.line) + "\n")
                        out.flush()
                        count += 1
                        update(count, len(todo))

                    run_scan(todo, setup, min(self.workers, len(todo)), record)
        finally:
            index.close()
        latest = {line["file"]: line for line in _report_lines(self.report)}
        return list(latest.values())

    def clusters(self, recluster: bool) -> dict[str, Any]:
        from classifier_service.library import FaceIndex

        index = FaceIndex(index_path(self.report))
        try:
            return cluster_library(index, self.settings.classifier_threshold(), recluster)
        finally:
            index.close()


def _report_lines(report: Path) -> list[dict[str, Any]]:
    lines = []
    for text in report.read_text().splitlines() if report.exists() else []:
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue  # a line cut short by an interruption: that file was scanned again
    return lines


def print_people(lines: list[dict[str, Any]]) -> None:
    from classifier_service.scan import summarise

    table = Table("person", "photos", "faces")
    for name, entry in sorted(summarise(lines).items(), key=lambda item: -item[1]["photos"]):
        table.add_row(
            f"[{'red' if name == 'unknown' else 'green'}]{name}[/]", str(entry["photos"]), str(entry["faces"])
        )
    Console().print(table)


def write_csv(lines: list[dict[str, Any]], path: Path) -> None:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "face", "x", "y", "w", "h", "name", "score", "known", "error"])
        for line in lines:
            if line.get("error"):
                writer.writerow([line["file"], "", "", "", "", "", "", "", "", line["error"]])
            for number, face in enumerate(line["faces"]):
                writer.writerow([line["file"], number, *face["bbox"], face["name"], face["score"], face["known"], ""])


COMMANDS = [scan, search]
