"""The edge agent's MQTT adapter: announce the node, publish embeddings, send heartbeats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edge_agent.forwarder import Forwarder
from edge_agent.pipeline import EdgePipeline
from edge_agent.thumbnails import ThumbnailKeeper, face_thumbnail
from facewire.errors import SchemaError
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection, Will
from facewire.schema import FaceResult
from facewire.schema.status import NodeStatus
from facewire.schema.thumbnail import Thumbnail
from facewire.sources import Frame
from facewire.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    frames: int
    faces: int
    published: int
    duplicates: int
    seconds: float
    unconfirmed: int
    refused: int = 0  # embeddings the broker refused during the run (kept in the spool's refused table)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class EdgeAgent:
    """Runs frames through the pipeline; every message goes through the on-disk spool to its node's topic (QoS 1)."""

    def __init__(
        self,
        pipeline: EdgePipeline,
        connection: MqttConnection,
        topics: Topics,
        source_label: str,
        forwarder: Forwarder,
        thumbnails: ThumbnailKeeper | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.thumbnails = thumbnails  # opt-in (edge.unknown_thumbnails): None sends no image, ever
        self.connection = connection
        self.forwarder = forwarder
        self.on_processed: Callable[[Frame], None] | None = None  # e.g. the annotated preview
        self.topics = topics
        self.node = pipeline.settings.node_id
        self.source_label = source_label
        self._started = time.monotonic()

    @staticmethod
    def will(topics: Topics, node: str) -> Will:
        """The retained 'offline' status the broker publishes if this node vanishes."""
        payload = NodeStatus(node, "offline", reason="connection lost").to_json()
        return Will(topics.node_status(node), payload)

    def offline(self) -> Will:
        """The retained status published on a clean exit."""
        return Will(self.topics.node_status(self.node), self.status("offline"))

    def status(self, state: str) -> bytes:
        """The JSON status / heartbeat of this node."""
        counters = self.pipeline.counters
        elapsed = max(time.monotonic() - self._started, 1e-9)
        spool = self.forwarder.spool
        return NodeStatus(
            node=self.node,
            state=state,
            ts=time.time(),
            model=self.pipeline.analyzer.embedder.model_id,
            detector=self.pipeline.analyzer.detector.id,
            provider=self.provider,
            source=self.source_label,
            frames=counters.frames,
            faces=counters.faces,
            embedded=counters.embedded,
            published=counters.published,
            gated=dict(counters.gated),
            fps=round(counters.frames / elapsed, 2),
            faces_per_s=round(counters.faces / elapsed, 2),
            unconfirmed=self.unconfirmed,
            spool_depth=spool.depth,
            spool_dropped=spool.dropped,
            spool_refused=spool.refused,
            spool_unheard=self.forwarder.unheard,
        ).to_json()

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider the embedder runs on (TensorRT, CUDA or CPU)."""
        return str(getattr(self.pipeline.analyzer.embedder, "provider", "unknown"))

    @property
    def unconfirmed(self) -> int:
        """Embeddings the broker has not acknowledged yet (they wait in the spool)."""
        return self.forwarder.spool.depth

    def on_connection_change(self, connected: bool) -> None:
        """Announce the node and resume draining the spool after every (re)connect."""
        if connected:
            self.connection.publish(self.topics.node_status(self.node), self.status("online"), retain=True)
        self.forwarder.connection_changed(connected)

    def run(
        self, frames: Iterator[Frame], stop: threading.Event, heartbeat_seconds: float, drain_timeout: float = 30.0
    ) -> RunSummary:
        """Process frames until the source ends or ``stop`` is set; then wait for the broker's acks."""
        self._started = time.monotonic()
        log.info(kv("edge-start", node=self.node, source=self.source_label, provider=self.provider))
        if self.connection.connected:
            self.connection.publish(self.topics.node_status(self.node), self.status("online"), retain=True)
        next_heartbeat = time.monotonic() + heartbeat_seconds
        for frame in frames:
            if stop.is_set():
                break
            for message in self.pipeline.process(frame):
                self.forwarder.put(self.topics.embeddings(self.node), message.to_msgpack())
            if self.thumbnails is not None:
                self._keep_thumbnails(frame)
            if self.on_processed is not None:
                self.on_processed(frame)
            if time.monotonic() >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = time.monotonic() + heartbeat_seconds
        return self._finish(drain_timeout)

    def _keep_thumbnails(self, frame: Frame) -> None:
        assert self.thumbnails is not None
        side = self.pipeline.settings.thumbnail_side
        for face in self.pipeline.last_faces:
            if face.seq is not None:
                self.thumbnails.keep(face.seq, face.track, frame.ts, face_thumbnail(frame.image, face.bbox, side))

    def on_result(self, message: Message) -> None:
        """A result about this node: send the face's thumbnail if it is unknown (thumbnails on only)."""
        if self.thumbnails is None:
            return
        try:
            result = FaceResult.from_json(message.payload)
        except SchemaError:
            return
        item = self.thumbnails.take_unknown(result.seq, result.known)
        if item is not None:
            track, ts, jpeg = item
            payload = Thumbnail(self.node, result.seq, track, ts, jpeg).to_json()
            self.connection.publish(self.topics.thumbnails(self.node), payload)

    def _heartbeat(self) -> None:
        if self.connection.connected:
            self.connection.publish(self.topics.node_status(self.node), self.status("online"), retain=True)
        spool = self.forwarder.spool
        log.info(
            kv(
                "heartbeat",
                node=self.node,
                frames=self.pipeline.counters.frames,
                embedded=self.pipeline.counters.embedded,
                gated=self.pipeline.counters.gated_text(),
                connected=self.connection.connected,
                spool_depth=spool.depth,
                spool_dropped=spool.dropped,
                spool_refused=spool.refused,
                spool_unheard=self.forwarder.unheard,
            )
        )

    def _finish(self, timeout: float = 30.0) -> RunSummary:
        """Wait up to ``timeout`` for the spool to drain while the broker is connected; never for an absent one."""
        deadline = time.monotonic() + timeout
        while self.forwarder.spool.depth and self.connection.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        counters = self.pipeline.counters
        summary = RunSummary(
            counters.frames,
            counters.faces,
            counters.published,
            counters.duplicates,
            time.monotonic() - self._started,
            self.unconfirmed,
            self.forwarder.refused,
        )
        if summary.unconfirmed:
            log.warning(
                kv("spooled-at-exit", node=self.node, count=summary.unconfirmed, spool=str(self.forwarder.spool.path))
            )
        return summary
