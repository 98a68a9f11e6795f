"""Gallery commands: ``facewire enroll / forget / rename / reload / unknowns / whereis / gallery``.

Online (default): the command is published on gallery/cmd and the CLI waits for
the classifiers' events. ``--offline`` acts on one replica's store directly; on a
SQLite store it is only safe while no classifier runs on it (see docs/gallery.md). On
the shared PostgreSQL gallery it claims the command and applies it in one transaction
of the change log, as a replica does, so the running replicas serve it.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from classifier_service.gallery.camera_enrol import CameraEnrolment, FrameVerdict, run_camera_enrolment
from classifier_service.gallery.client import GalleryClient
from classifier_service.gallery.enrolment import check_photo, view_name
from classifier_service.gallery.manager import GalleryManager
from classifier_service.gallery.operations import apply_once
from classifier_service.gallery.setup import legacy_cache_file, open_manager
from facewire.cli_common import common_options, fail_cleanly, settings_from
from facewire.config import Settings
from facewire.errors import FacewireError, ImageError, SchemaError
from facewire.faces import create_analyzer
from facewire.images import is_image_file, load_image
from facewire.progress import progress_bar
from facewire.schema.gallery import GalleryCommand, b64_vectors, valid_person
from facewire.sources import open_frames

CHUNK = 256  # ~90 KB of base64 float16 per command: well under the broker's max_packet_size (256 KB)
console = Console(stderr=True)


@dataclass(frozen=True)
class GalleryTarget:
    """Where a gallery command goes: the classifiers over MQTT, or one replica's store (``--offline``)."""

    settings: Settings
    offline: bool
    instance: str
    replicas: int
    timeout: float | None

    def run(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply one command offline, or send it and wait for ``replicas`` answers."""
        return run_command(self.settings, command, self.offline, self.instance, self.replicas, self.timeout)

    def gather(self, command: dict[str, Any], quiet: float) -> list[dict[str, Any]]:
        """Every replica's answer to a read-only command (the one store's, offline)."""
        if self.offline:
            return run_command(self.settings, command, True, self.instance, 1, self.timeout)
        with GalleryClient(self.settings.mqtt, actor()) as client:
            return client.gather(command, quiet=quiet, timeout=self.timeout or 10.0)


def gallery_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The common options, --offline, --instance, --replicas, --timeout and --json: the command is called
    with a :class:`GalleryTarget` (after the click context, if it takes one) and ``as_json``."""

    @functools.wraps(func)
    def with_target(
        config_file: Path | None,
        broker_url: str | None,
        verbose: int,
        offline: bool,
        instance: str,
        replicas: int,
        timeout: float | None,
        **kwargs: Any,
    ) -> Any:
        target = GalleryTarget(settings_from(config_file, broker_url, verbose), offline, instance, replicas, timeout)
        return func(target, **kwargs)

    command = fail_cleanly(with_target)
    command = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")(command)
    command = click.option("--timeout", type=float, default=None, help="Seconds to wait for the classifiers.")(command)
    command = click.option("--replicas", type=int, default=1, show_default=True, help="Replicas that must answer.")(
        command
    )
    command = click.option("--instance", default="", help="Offline: the replica whose store to use ('' : default).")(
        command
    )
    command = click.option(
        "--offline", is_flag=True, help="Act on the store directly (SQLite: no classifier may be running on it)."
    )(command)
    return common_options(command)


def actor() -> str:
    """Who runs this command, for the audit trail: ``cli:USER@HOST``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"cli:{user}@{socket.gethostname()}"[:128]


def run_command(
    settings: Settings, command: dict[str, Any], offline: bool, instance: str, replicas: int, timeout: float | None
) -> list[dict[str, Any]]:
    """Apply one gallery command offline, or send it and wait for ``replicas`` answers."""
    if offline:
        manager = _offline_manager(settings, instance)
        try:
            return _apply_offline(manager, settings, command)
        finally:
            manager.flush()
            manager.store.close()
    with GalleryClient(settings.mqtt, actor()) as client:
        return client.request(command, replicas, timeout or settings.gallery.command_timeout)


def _offline_manager(settings: Settings, instance: str) -> GalleryManager:
    manager = open_manager(settings, instance)
    manager.restore()
    return manager


def _apply_offline(manager: GalleryManager, settings: Settings, command: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply ``command`` here; the events as the wire carries them (what ``GalleryClient.request`` returns)."""
    offline = {"id": f"offline-{uuid.uuid4().hex[:12]}", "actor": actor() + " (offline)", **command}
    return _apply_here(manager, settings, GalleryCommand.from_json(json.dumps(offline).encode()))


def _apply_here(manager: GalleryManager, settings: Settings, command: GalleryCommand) -> list[dict[str, Any]]:
    """A shared gallery: claimed, one transaction, logged, as a replica applies a command it received (the
    running replicas serve it through NOTIFY); the key is the command as the wire carries it."""
    key = hashlib.sha256(b"offline\0" + command.to_json()).hexdigest()
    outcome = apply_once(manager, command, key, legacy_cache_file(settings))
    events = [json.loads(event.to_json()) for event in outcome.events]
    for forwarded in outcome.forward:  # through the wire format, as a replica would receive it
        events += _apply_here(manager, settings, GalleryCommand.from_json(forwarded.to_json()))
    return events


def collect_photos(paths: tuple[Path, ...], person: str | None) -> list[tuple[str, Path]]:
    """(person, photo) pairs; without ``person`` each photo's person is its top folder under the given dir."""
    pairs: list[tuple[str, Path]] = []
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if is_image_file(p))
        for file in files:
            owner = person or (file.relative_to(path).parts[0] if path.is_dir() and file.parent != path else "")
            if not owner:
                raise click.UsageError(f"{file}: with --by-folder, photos must be in DIR/<person>/")
            pairs.append((owner, file))
    return pairs


@click.command()
@gallery_options
@click.argument("args", metavar="PERSON PHOTO_OR_DIR...", nargs=-1, required=True)
@click.option("--by-folder", is_flag=True, help="No PERSON: every DIR/<person>/ folder is one person.")
@click.option("--list", "list_all", is_flag=True, help="Print accepted photos too, not only rejected ones.")
@click.option("--camera", default=None, help="Enrol PERSON from a camera index or any video source instead of photos.")
@click.option("--frames", "wanted", type=int, default=5, show_default=True, help="With --camera: good frames to take.")
@click.option("--max-frames", type=int, default=1500, show_default=True, help="With --camera: give up after these.")
def enroll(
    target: GalleryTarget,
    args: tuple[str, ...],
    by_folder: bool,
    list_all: bool,
    camera: str | None,
    wanted: int,
    max_frames: int,
    as_json: bool,
) -> None:
    """Check, embed and enrol photos of PERSON (photos are checked here; only embeddings are sent)."""
    settings = target.settings
    if camera is not None:
        if by_folder or len(args) != 1:
            raise click.UsageError("--camera takes exactly one PERSON and no photos")
        subject = valid_person(args[0])
        model, vectors = enrol_from_camera(settings, camera, wanted, max_frames)
        items = [(Path(f"camera:{camera}#{frame}"), vector) for frame, vector in vectors]
        enrolled, duplicates = send_embeddings(target, model, {subject: items})
        if as_json:
            refused = [{"frame": str(path), "reason": reason, "by": "gallery"} for path, reason in duplicates]
            click.echo(json.dumps({"person": subject, "source": camera, "enrolled": enrolled, "rejected": refused}))
            return
        for path, reason in duplicates:
            click.echo(f"rejected {path}: {reason}")
        click.echo(f"{subject}: {enrolled} frames enrolled from {camera}, {len(duplicates)} rejected by the gallery")
        return
    person = None if by_folder else valid_person(args[0])
    paths = tuple(Path(a) for a in (args if by_folder else args[1:]))
    missing = [p for p in paths if not p.exists()]
    if not paths or missing:
        raise click.UsageError(f"photos not found: {', '.join(map(str, missing))}" if missing else "no photos given")
    pairs = collect_photos(paths, person)
    analyzer = create_analyzer(settings.model, det_threshold=0.6, min_face=20)
    started = time.perf_counter()
    accepted: dict[str, list[tuple[Path, np.ndarray]]] = {}
    views: dict[str, list[tuple[Path, np.ndarray]]] = {}  # gallery.enrol_face_sizes: extra rows, after the photos
    rejected: list[tuple[Path, str]] = []
    with progress_bar(f"checking {len(pairs)} photos") as update:
        for done, (owner, path) in enumerate(pairs, start=1):
            try:
                valid_person(owner)
                check = check_photo(analyzer, load_image(path), settings.gallery)
                reason = check.reason
            except (ImageError, SchemaError) as exc:
                check, reason = None, str(exc)
            if check is not None and check.vector is not None:
                accepted.setdefault(owner, []).append((path, check.vector))
                views.setdefault(owner, []).extend((Path(view_name(str(path), tag)), v) for tag, v in check.views)
                if list_all and not as_json:
                    click.echo(f"ok       {path}")
            else:
                rejected.append((path, reason))
                if not as_json:
                    click.echo(f"rejected {path}: {reason}")
            update(done, len(pairs))
    checked = time.perf_counter() - started
    model = analyzer.embedder.model_id
    enrolled, duplicates = send_embeddings(target, model, accepted)
    enrolled_views = send_embeddings(target, model, views)[0] if views else 0  # a view too near another: dropped
    elapsed = time.perf_counter() - started
    if as_json:
        refused = [{"file": str(path), "reason": reason, "by": "checks"} for path, reason in rejected]
        refused += [{"file": str(path), "reason": reason, "by": "gallery"} for path, reason in duplicates]
        click.echo(
            json.dumps({"photos": len(pairs), "enrolled": enrolled, "views": enrolled_views, "rejected": refused})
        )
        return
    for path, reason in duplicates:
        click.echo(f"rejected {path}: {reason}")
    click.echo(
        f"{len(pairs)} photos: {enrolled} enrolled (+{enrolled_views} small-face views), {len(rejected)} rejected"
        f" by checks, {len(duplicates)} rejected by the gallery; {len(pairs) / max(checked, 1e-9):.1f} photos/s"
        f" checked, {elapsed:.1f}s in all"
    )


def enrol_from_camera(
    settings: Settings, source: str, wanted: int, max_frames: int
) -> tuple[str, list[tuple[int, np.ndarray]]]:
    """The model id and good, varied frames of one face from ``source``, with live feedback on refused frames."""
    analyzer = create_analyzer(settings.model, det_threshold=0.6, min_face=20)
    enrolment = CameraEnrolment(analyzer, settings.gallery, wanted)
    console = Console(stderr=True)
    last_reason = ""
    with console.status("looking for a face...") as status:

        def feedback(verdict: FrameVerdict) -> None:
            nonlocal last_reason
            text = f"frame {verdict.frame}: {verdict.reason}"
            status.update(f"{'[green]' if verdict.accepted else '[yellow]'}{text}[/]  ({len(enrolment.kept)}/{wanted})")
            if verdict.accepted or verdict.reason != last_reason:
                console.print(("[green]" if verdict.accepted else "[yellow]") + text)
            last_reason = verdict.reason

        kept = run_camera_enrolment(enrolment, open_frames(source), feedback, max_frames)
    if len(kept) < wanted:
        raise FacewireError(f"only {len(kept)} of {wanted} good frames in {max_frames} frames of {source}")
    return analyzer.embedder.model_id, kept


def send_embeddings(
    target: GalleryTarget, model: str, accepted: dict[str, list[tuple[Path, np.ndarray]]]
) -> tuple[int, list[tuple[Path, str]]]:
    """Enrol each person's (source, embedding) pairs in chunks; (faces enrolled, (source, reason) of each the
    gallery refused). An error event from the classifiers is a FacewireError."""
    enrolled = 0
    duplicates: list[tuple[Path, str]] = []
    for owner, items in accepted.items():
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            command = {
                "op": "enroll",
                "person": owner,
                "model": model,
                "embeddings": b64_vectors(np.stack([v for _p, v in chunk])),
            }
            event = target.run(command)[0]
            if event["event"] == "error":
                raise FacewireError(f"{owner}: {event.get('reason')}: {event.get('detail')}")
            enrolled += int(event.get("accepted", 0))
            for result in event.get("results", []):
                if not result["accepted"]:
                    duplicates.append((chunk[result["index"]][0], str(result["reason"])))
    return enrolled, duplicates


@click.command()
@gallery_options
@click.argument("person")
def forget(
    target: GalleryTarget,
    person: str,
    as_json: bool,
) -> None:
    """Erase PERSON from every replica: embeddings, negatives, enrolment photos, cached vectors."""
    events = target.run({"op": "forget", "person": person})
    if as_json:
        click.echo(json.dumps({"person": person, "replicas": events}))
        return
    for event in events:
        click.echo(f"{event['instance']}: forgot {person}: {event['removed']} (gallery {event['gallery_version']})")


@click.command()
@gallery_options
@click.argument("old")
@click.argument("new")
def rename(
    target: GalleryTarget,
    old: str,
    new: str,
    as_json: bool,
) -> None:
    """Rename OLD to NEW on every replica: embeddings, negatives, last seen, dataset folder (refused if NEW exists)."""
    events = target.run({"op": "rename", "person": old, "to": new})
    failed = [e for e in events if e["event"] == "error"]
    if as_json:
        click.echo(json.dumps({"person": old, "to": new, "replicas": events}))
    for event in (e for e in events if e["event"] == "renamed" and not as_json):
        version = event["gallery_version"]
        click.echo(f"{event['instance']}: renamed {old} to {new}: {event['renamed']} (gallery {version})")
    if failed:
        reasons = ", ".join(f"{e['instance']}: {e.get('reason')} {e.get('detail', '')}".strip() for e in failed)
        raise FacewireError(f"rename {old} -> {new} refused: {reasons}")


@click.command()
@gallery_options
def reload(
    target: GalleryTarget,
    as_json: bool,
) -> None:
    """Re-read the dataset folder (new photos enrolled, removed ones dropped) on every replica."""
    events = target.run({"op": "reload"})
    if as_json:
        click.echo(json.dumps({"replicas": events}))
        return
    for event in events:
        click.echo(
            f"{event['instance']}: +{event['added']} -{event['removed']} ={event['unchanged']}"
            f" ({event['rejected']} rejected), gallery {event['gallery_version']}"
        )


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@click.group(invoke_without_command=True)
@gallery_options
@click.option("--min-size", type=int, default=2, show_default=True, help="Smallest cluster listed.")
@click.pass_context
def unknowns(
    ctx: click.Context,
    target: GalleryTarget,
    min_size: int,
    as_json: bool,
) -> None:
    """List clusters of unknown faces (size, first/last seen, nodes); ``unknowns name`` enrols one."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = target
        return
    events = target.gather({"op": "unknowns"}, quiet=1.0)
    clusters = sorted((c for e in events for c in e["clusters"]), key=lambda c: -c["size"])
    if as_json:
        click.echo(json.dumps({"clusters": [c for c in clusters if c["size"] >= min_size]}))
        return
    table = Table("cluster", "size", "first seen", "last seen", "nodes")
    for cluster in (c for c in clusters if c["size"] >= min_size):
        nodes = ", ".join(f"{n} x{k}" for n, k in sorted(cluster["nodes"].items()))
        table.add_row(
            cluster["cluster"], str(cluster["size"]), clock(cluster["first_seen"]), clock(cluster["last_seen"]), nodes
        )
    Console().print(table)


@unknowns.command("name")
@click.argument("cluster")
@click.argument("person")
@click.pass_obj
@fail_cleanly
def unknowns_name(target: GalleryTarget, cluster: str, person: str) -> None:
    """Enrol every face of CLUSTER (as listed, e.g. ``default:3``) as PERSON."""
    command = {"op": "name-cluster", "cluster": cluster, "person": person}
    for event in target.run(command):
        click.echo(f"{event['instance']}: {event['event']} {person}: {event.get('accepted', 0)} faces")


@click.command()
@gallery_options
@click.argument("person")
def whereis(
    target: GalleryTarget,
    person: str,
    as_json: bool,
) -> None:
    """Last known location (node and time) of PERSON, from the classifiers' results."""
    events = target.gather({"op": "whereis", "person": person}, quiet=0.5)
    seen = [e for e in events if e.get("seen_at")]
    if as_json:
        newest = max(seen, key=lambda e: e["seen_at"]) if seen else None
        where = {"node": newest["node"], "seen_at": newest["seen_at"]} if newest else None
        click.echo(json.dumps({"person": person, "last_seen": where}))
        return
    if not seen:
        click.echo(f"{person}: not seen (see also `facewire log --last-seen {person}`)")
        return
    newest = max(seen, key=lambda e: e["seen_at"])
    click.echo(f"{person} last seen on {newest['node']} at {clock(newest['seen_at'])}")


@click.command()
@gallery_options
def people(
    target: GalleryTarget,
    as_json: bool,
) -> None:
    """Enrolled people: photos, when enrolled, where and when last seen (every replica's answer merged)."""
    events = target.gather({"op": "people"}, quiet=0.5)
    roster = merge_rosters([e.get("roster", []) for e in events])
    if as_json:
        click.echo(json.dumps({"people": roster}))
        return
    table = Table("person", "photos", "enrolled", "last seen", "where")
    for entry in roster:
        seen = entry["last_seen"]
        when, where = (clock(seen["at"]), seen["node"]) if seen else ("-", "-")
        table.add_row(entry["person"], str(entry["photos"]), clock(entry["enrolled"]), when, where)
    Console().print(table)


def merge_rosters(rosters: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per person from several replicas: most photos, first enrolled, newest sighting."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in (e for roster in rosters for e in roster):
        have = merged.setdefault(entry["person"], dict(entry))
        have["photos"] = max(have["photos"], entry["photos"])
        have["enrolled"] = min(have["enrolled"], entry["enrolled"])
        seen, theirs = have["last_seen"], entry["last_seen"]
        if theirs and (not seen or theirs["at"] > seen["at"]):
            have["last_seen"] = theirs
    return [merged[name] for name in sorted(merged)]


COMMANDS = [enroll, forget, rename, reload, unknowns, whereis, people]
