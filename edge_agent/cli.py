"""The ``edge-agent`` command."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from edge_agent.agent import EdgeAgent
from edge_agent.forwarder import Forwarder
from edge_agent.overlay import Annotator
from edge_agent.pipeline import EdgePipeline
from edge_agent.sequence import SequenceCounter
from edge_agent.spool import Spool
from edge_agent.thumbnails import ThumbnailKeeper
from edge_agent.watch import WatchState, watched_frames
from facewire import __version__
from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.errors import BrokerError, ConfigError, SchemaError
from facewire.faces import create_analyzer
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection
from facewire.schema import FaceResult
from facewire.sources import describe_source, open_frames, paced, source_fps
from facewire.topics import Topics, valid_node_id

log = logging.getLogger(__name__)


@click.group()
@click.version_option(__version__, package_name="facewire")
def main() -> None:
    """facewire edge agent: faces in, embeddings out."""


@main.command()
@common_options
@click.option("--node-id", default=None, help="This node's id (default: edge).")
@click.option("--source", default=None, help="Video file, camera index, rtsp/http URL or image folder.")
@click.option("--max-fps", type=float, default=None, help="Process at most this many frames per second.")
@click.option("--skip-frames", type=int, default=None, help="Frames skipped after each processed one.")
@click.option("--min-face", type=int, default=None, help="Smallest face side in pixels.")
@click.option("--det-threshold", type=float, default=None, help="Detector score threshold.")
@click.option("--model", default=None, help="Embedder model id, or the path of an exported .onnx file.")
@click.option("--detector", type=click.Choice(["yunet", "haar", "mediapipe"]), default=None, help="Face detector.")
@click.option("--mask", type=click.Choice(["none", "facemesh"]), default=None, help="Background mask of face crops.")
@click.option("--once", is_flag=True, help="Stop at the end of a file or folder (default: replay it).")
@click.option("--watch", is_flag=True, help="Folder source: process new images and videos as they appear.")
@click.option(
    "--record",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the annotated video (boxes and names from the results) to this .mp4, plus a .json of the boxes.",
)
@click.option("--preview", is_flag=True, help="Show the annotated video in a window (needs a desktop OpenCV).")
@fail_cleanly
def run(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    node_id: str | None,
    source: str | None,
    max_fps: float | None,
    skip_frames: int | None,
    min_face: int | None,
    det_threshold: float | None,
    model: str | None,
    detector: str | None,
    mask: str | None,
    once: bool,
    watch: bool,
    record: Path | None,
    preview: bool,
) -> None:
    """Capture frames, publish face embeddings to facewire/embeddings/NODE."""
    settings = settings_from(
        config_file,
        broker_url,
        verbose,
        edge={
            "node_id": node_id,
            "source": source,
            "max_fps": max_fps,
            "skip_frames": skip_frames,
            "min_face": min_face,
            "det_threshold": det_threshold,
        },
        model={"embedder": model, "detector": detector, "mask": mask},
    )
    edge = settings.edge
    if not valid_node_id(edge.node_id):
        raise ConfigError(f"node id {edge.node_id!r} must be letters, digits, '-', '_' or '.' (max 64)")
    kind = describe_source(edge.source)
    if once and kind in ("camera", "stream"):
        raise ConfigError("--once only applies to a video file or an image folder")
    if watch and (kind != "folder" or once):
        raise ConfigError("--watch needs a folder --source and runs until stopped (not with --once)")
    analyzer = create_analyzer(settings.model, edge.det_threshold, edge.min_face)
    topics = Topics(settings.mqtt.topic_prefix)
    counter = SequenceCounter(edge.state_dir / f"{edge.node_id}.seq")
    pipeline = EdgePipeline(analyzer, edge, counter)
    connection = MqttConnection(
        settings.mqtt, f"edge-{edge.node_id}-{socket.gethostname()}", will=EdgeAgent.will(topics, edge.node_id)
    )
    spool_path = (edge.spool_dir or edge.state_dir) / f"{edge.node_id}.spool.sqlite"
    spool = Spool(spool_path, edge.spool_max_messages, edge.spool_fsync, keep_acked=edge.resend_seconds)
    forwarder = Forwarder(spool, connection, resend_seconds=edge.resend_seconds)
    thumbnails = ThumbnailKeeper() if edge.unknown_thumbnails else None
    agent = EdgeAgent(pipeline, connection, topics, kind, forwarder, thumbnails)
    if thumbnails is not None:
        connection.subscribe(topics.results(edge.node_id), agent.on_result)
        click.echo(f"{edge.node_id}: edge.unknown_thumbnails is on: thumbnails of unknown faces are sent", err=True)
    connection.on_connection_change = agent.on_connection_change
    if spool.depth:
        click.echo(f"{edge.node_id}: {spool.depth} embeddings waiting in spool {spool.path}", err=True)
    annotator = attach_annotator(agent, connection, topics, record, preview, edge.max_fps or source_fps(edge.source))
    connect_or_spool(connection)
    forwarder.start()
    click.echo(f"{edge.node_id}: {kind} source, embedder on {agent.provider}, broker {settings.mqtt.url}", err=True)
    stop = stop_event_on_signals()
    if watch:
        state = WatchState(edge.state_dir / f"{edge.node_id}.watch.sqlite")
        frames = paced(watched_frames(Path(edge.source), state, stop), edge.max_fps, edge.skip_frames)
    else:
        frames = paced(open_frames(edge.source, loop=not once), edge.max_fps, edge.skip_frames)
    try:
        summary = agent.run(frames, stop, edge.heartbeat_seconds, edge.drain_timeout)
    finally:
        if annotator is not None:
            annotator.close()
        forwarder.close()
        connection.close(final=agent.offline())
        spool.close()
    click.echo(
        f"{edge.node_id}: {summary.frames} frames, {summary.faces} faces, {summary.published} published "
        f"({summary.duplicates} duplicates skipped), {pipeline.counters.embedded} embedded, "
        f"gated {pipeline.counters.gated_text()}, {summary.fps:.1f} frames/s",
        err=True,
    )
    if summary.refused:
        raise BrokerError(
            f"{summary.refused} embeddings refused by {settings.mqtt.url} (see the publish-refused log line);"
            f" kept with the reason in the 'refused' table of {spool.path}"
        )
    if summary.unconfirmed:
        message = f"{summary.unconfirmed} embeddings not acknowledged by {settings.mqtt.url}; kept in {spool.path}"
        if forwarder.unheard:
            message += " (the broker had no subscriber for them: is a classifier running?)"
        if once and not stop.is_set():
            raise BrokerError(f"{message} and sent on the next run")
        click.echo(f"{edge.node_id}: {message}", err=True)


def attach_annotator(
    agent: EdgeAgent, connection: MqttConnection, topics: Topics, record: Path | None, preview: bool, fps: float
) -> Annotator | None:
    """With --record/--preview: draw each processed frame with the names its results bring back."""
    if record is None and not preview:
        return None
    annotator = Annotator(record, preview, fps)

    def on_result(message: Message) -> None:
        try:
            annotator.on_result(FaceResult.from_json(message.payload))
        except SchemaError as exc:
            log.warning(kv("bad-result", reason=exc.reason))

    connection.subscribe(topics.results(agent.node), on_result)
    agent.on_processed = lambda frame: annotator.add_frame(frame.index, frame.image, agent.pipeline.last_faces)
    return annotator


def connect_or_spool(connection: MqttConnection) -> None:
    """Connect now, or keep retrying in the background while embeddings go to the spool.

    A broker that refuses us (bad credentials, not authorised) is an error; one that cannot be reached is not.
    """
    try:
        connection.connect()
    except BrokerError as exc:
        if connection.refusal is not None:
            raise
        click.echo(f"warning: {exc}; spooling embeddings and retrying in the background", err=True)
        connection.connect_in_background()
