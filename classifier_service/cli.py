"""The ``classifier-service`` command."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import click

from classifier_service.core import Classifier
from classifier_service.gallery.service import GalleryService
from classifier_service.gallery.setup import legacy_cache_file, open_manager
from classifier_service.identify_service import IdentifyService
from classifier_service.tracks import TrackMemory
from facewire import __version__
from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.errors import ConfigError
from facewire.faces import create_analyzer
from facewire.models.registry import resolve_embedder
from facewire.mqtt import MqttConnection
from facewire.progress import progress_bar
from facewire.topics import Topics

SESSION_EXPIRY_SECONDS = 3600


@click.group()
@click.version_option(__version__, package_name="facewire")
def main() -> None:
    """facewire classifier: embeddings in, names out."""


@main.command()
@common_options
@click.option("--gallery", type=click.Path(path_type=Path, file_okay=False), default=None, help="Enrolment folder.")
@click.option("--threshold", type=float, default=None, help="Cosine score needed to name a face.")
@click.option("--model", default=None, help="Embedder model id or exported .onnx path (must match the edges').")
@click.option("--detector", type=click.Choice(["yunet", "haar", "mediapipe"]), default=None, help="Face detector.")
@click.option("--mask", type=click.Choice(["none", "facemesh"]), default=None, help="Background mask of face crops.")
@click.option("--instance", default=None, help="Replica id (stable across restarts keeps its session).")
@fail_cleanly
def run(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    gallery: Path | None,
    threshold: float | None,
    model: str | None,
    detector: str | None,
    mask: str | None,
    instance: str | None,
) -> None:
    """Identify embeddings from facewire/embeddings/+ and publish facewire/results/NODE."""
    settings = settings_from(
        config_file,
        broker_url,
        verbose,
        classifier={"gallery": gallery, "threshold": threshold, "instance": instance},
        model={"embedder": model, "detector": detector, "mask": mask},
    )
    conf = settings.classifier
    import faiss  # the `server` extra; `classifier-service --help` runs without it

    faiss.omp_set_num_threads(conf.faiss_threads)
    if not conf.gallery.is_dir():
        raise ConfigError(f"gallery folder not found: {conf.gallery} (expected GALLERY/<person>/*.jpg)")
    manager = open_manager(settings, conf.instance)
    with progress_bar(f"gallery {conf.gallery}") as update:
        report = manager.open(update)
    click.echo(
        f"gallery {manager.version}: {len(set(manager.matcher.labels))} people, {len(manager.matcher.labels)}"
        f" embeddings ({report.embedded} photos embedded now, {len(report.rejected)} rejected,"
        f" index {'restored from file' if manager.restored_from_file else 'built'}), model {manager.model_id}",
        err=True,
    )
    topics = Topics(settings.mqtt.topic_prefix)
    name = conf.instance or f"{socket.gethostname()}-{os.getpid()}"
    classifier = Classifier(
        manager.matcher,
        manager.model_id,
        manager.version,
        dim=resolve_embedder(settings.model.embedder, settings.model.cache_dir)[0].dim,
        max_age=conf.max_age_seconds,
        max_future=conf.max_future_seconds,
        observer=manager.observe,
        tracks=TrackMemory(conf.track_frames, conf.track_gap_seconds),
        quality_slopes=conf.quality_slopes,
    )
    manager.on_swap, manager.on_forget = classifier.swap, classifier.forget_name
    manager.start_observer()
    connection = MqttConnection(
        settings.mqtt,
        f"classifier-{name}",
        session_expiry=SESSION_EXPIRY_SECONDS if conf.instance else 0,
        manual_ack=True,
        receive_maximum=min(conf.queue_max, 65535),
    )
    stop = stop_event_on_signals()
    died: list[str] = []

    def worker_died(worker: str) -> None:
        died.append(worker)
        stop.set()

    from classifier_service.service import ClassifierService  # needs orjson (server extra): not at --help

    service = ClassifierService(classifier, connection, topics, conf, name, worker_died)
    gallery_service = GalleryService(
        manager, connection, topics, legacy_cache_file(settings), worker_died, conf.resend_seconds
    )
    service.on_replay = gallery_service.replay_events
    identify_service = IdentifyService(
        connection,
        topics,
        lambda: manager.matcher,
        functools.cache(lambda: create_analyzer(settings.model, det_threshold=0.6, min_face=20)),
        conf.share_group,
        conf.quality_slopes,
        worker_died,
    )
    connection.set_will(service.will())
    # All subscribe before connecting: what a resumed session has queued arrives right after CONNACK.
    gallery_service.start()
    identify_service.start()
    service.start()
    connection.connect()
    if manager.fresh_store:
        gallery_service.request_sync()
    service.announce()
    click.echo(f"classifier {name} ready on {settings.mqtt.url}", err=True)
    while not stop.wait(10.0):
        service.heartbeat()
    gallery_service.stop()
    identify_service.stop()
    manager.flush()
    service.stop()
    manager.store.close()
    if died:
        raise click.ClickException(f"worker died: {', '.join(died)} (exiting so that it is restarted)")
