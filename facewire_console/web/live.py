"""The live feed: one MQTT subscription (the monitor's), fanned out to every open page as server-sent events.

The monitor's :class:`MonitorClient` and :class:`MonitorState` do the MQTT work
and keep the state; this module turns each message into a small JSON event and
hands it to every connected browser's bounded queue (a slow page loses events,
it never slows the broker connection). Node states are re-sent every few
seconds so "stale" shows without the page polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from facewire.config import Settings
from facewire.errors import SchemaError
from facewire.logs import kv
from facewire.mqtt import Message
from facewire.presentation import result_style
from facewire.schema import Alert, FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.topics import Topics
from facewire_console.monitor.adapter import MonitorClient
from facewire_console.monitor.state import MonitorState
from facewire_console.web.unknown_faces import UnknownFaces

log = logging.getLogger(__name__)

QUEUE_MAX = 500
NODES_EVERY = 5.0
PRUNE_EVERY_TICKS = 12  # thumbnails of unknown faces past their retention go once a minute
Event = tuple[str, dict[str, Any]]
GOODBYE: Event = ("goodbye", {})


def result_event(result: FaceResult) -> dict[str, Any]:
    """What the page shows of one result (the seed's colours: green known, yellow low confidence, red unknown)."""
    return {
        "ts": result.ts,
        "time": time.strftime("%H:%M:%S", time.localtime(result.ts)),
        "node": result.node,
        "seq": result.seq,
        "track": result.track,
        "name": result.name,
        "score": round(result.score, 4),
        "known": result.known,
        "style": result_style(result),
    }


def alert_event(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "time": time.strftime("%H:%M:%S", time.localtime(alert.raised_at)),
        "rule": alert.rule,
        "node": alert.node,
        "subject": alert.subject,
        "message": alert.message,
    }


class LiveHub:
    """Owns the dashboard's MQTT subscription and the queues of the connected pages."""

    def __init__(self, settings: Settings) -> None:
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.state = MonitorState(
            topics=self.topics,
            configured_threshold=settings.classifier_threshold(),
            stale_after=settings.nodes.stale_after,
        )
        self.client = MonitorClient(settings.mqtt, self.state, listeners=[self._on_message])
        self.client.connection.subscribe(self.topics.gallery_events(), self._on_gallery_event)
        self.unknown_faces = UnknownFaces(settings.web.data_dir / "unknown", settings.web.thumbnail_hours)
        self.client.connection.subscribe(self.topics.thumbnails_all(), self._on_thumbnail)
        self.gallery_listeners: list[Any] = []
        self._queues: set[asyncio.Queue[Event]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.start()
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await asyncio.to_thread(self.client.close)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_MAX)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._queues.discard(queue)

    def close_streams(self) -> None:
        """End every open event stream (thread-safe; called when the server is asked to stop)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._say_goodbye)

    def _say_goodbye(self) -> None:
        for queue in self._queues:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(GOODBYE)

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot(rows=100)

    def _on_message(self, topic: str, payload: bytes) -> None:
        """Network thread: turn one message into a page event (malformed ones are the state's to count)."""
        try:
            if self.topics.node_of(topic, "results") is not None:
                self._emit("result", result_event(FaceResult.from_json(payload)))
            elif self.topics.node_of(topic, "alerts") is not None:
                self._emit("alert", alert_event(Alert.from_json(payload)))
            elif topic.startswith(f"{self.topics.prefix}/nodes/"):
                self._emit("nodes", {"nodes": self.state.snapshot()["nodes"]})
        except SchemaError:
            return

    def _on_thumbnail(self, message: Message) -> None:
        """Network thread: keep an opted-in edge's thumbnail of an unknown face (a few KB, checked first)."""
        node = self.topics.node_of(message.topic, "thumbnails")
        if node is not None:
            self.unknown_faces.ingest(node, message.payload)

    def _on_gallery_event(self, message: Message) -> None:
        try:
            event = GalleryEvent.from_json(message.payload)
        except SchemaError:
            return
        for listener in self.gallery_listeners:
            listener(event)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fan_out, (kind, data))

    def _fan_out(self, event: Event) -> None:
        for queue in self._queues:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

    async def _tick(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(NODES_EVERY)
            ticks += 1
            if ticks % PRUNE_EVERY_TICKS == 0:
                await asyncio.to_thread(self.unknown_faces.prune)
            snapshot = self.state.snapshot()
            self._fan_out(("nodes", {"nodes": snapshot["nodes"], "connected": snapshot["connected"]}))
            if self.dropped:
                log.warning(kv("web-events-dropped", count=self.dropped))
                self.dropped = 0
