"""The stats subscriber: live scores from results, gallery and confirmations polled, report published retained."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from alert_service.stats import ThresholdStats
from alert_service.store import ResultLog
from facewire.config import StatsSettings
from facewire.errors import FacewireError, SchemaError
from facewire.gallery_folder import Gallery, scan_folder
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection, Will
from facewire.schema import FaceResult
from facewire.schema.status import Detail, ServiceStatus
from facewire.topics import Topics

log = logging.getLogger(__name__)
SERVICE = "stats"


def folder_signature(root: Path) -> str:
    """Changes whenever a photo is added, removed or rewritten under ``root``."""
    digest = hashlib.sha256()
    for person, path in scan_folder(root):
        stat = path.stat()
        digest.update(f"{person}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class StatsService:
    """Keeps :class:`ThresholdStats` current and publishes its report at most every ``publish_interval``."""

    def __init__(
        self,
        stats: ThresholdStats,
        connection: MqttConnection,
        topics: Topics,
        settings: StatsSettings,
        instance: str,
        gallery_dir: Path | None,
        load_gallery: Callable[[], Gallery],
        result_log: ResultLog | None,
    ) -> None:
        self.stats = stats
        self.connection = connection
        self.topics = topics
        self.settings = settings
        self.instance = instance
        self.gallery_dir = gallery_dir
        self.load_gallery = load_gallery
        self.result_log = result_log
        self.published = 0
        self._signature = ""
        self._last_confirmation = 0
        self._gallery_due = threading.Event()
        self._gallery_due.set()
        self._next = {"confirmations": 0.0, "publish": 0.0, "gallery": 0.0}

    @property
    def status_topic(self) -> str:
        return self.topics.service_status(SERVICE, self.instance)

    def status(self, state: str) -> bytes:
        details: dict[str, Detail] = {
            "gallery_version": self.stats.gallery_version,
            "live": self.stats.live.total,
            "published": self.published,
        }
        return ServiceStatus(self.instance, state, time.time(), details).to_json()

    def will(self) -> Will:
        return Will(self.status_topic, ServiceStatus(self.instance, "offline").to_json())

    def start(self) -> None:
        self.connection.subscribe(self.topics.results_all(), self._on_result)
        self.connection.subscribe(self.topics.gallery_events(), lambda _m: self._gallery_due.set())
        self.connection.publish(self.status_topic, self.status("online"), retain=True)

    def step(self, now: float) -> None:
        """One pass of the periodic work (called by the service loop)."""
        if self._gallery_due.is_set() or now >= self._next["gallery"]:
            self._gallery_due.clear()
            self._next["gallery"] = now + self.settings.gallery_poll
            self.refresh_gallery()
        if self.result_log is not None and now >= self._next["confirmations"]:
            self._next["confirmations"] = now + self.settings.confirmations_poll
            self.read_confirmations()
        if self.stats.dirty and now >= self._next["publish"]:
            self._next["publish"] = now + self.settings.publish_interval
            self.publish()

    def run(self, stop: threading.Event, heartbeat_seconds: float = 10.0) -> None:
        next_heartbeat = 0.0
        while not stop.wait(0.2):
            now = time.monotonic()
            self.step(now)
            if now >= next_heartbeat:
                next_heartbeat = now + heartbeat_seconds
                self.connection.publish(self.status_topic, self.status("online"), retain=True)

    def refresh_gallery(self) -> None:
        """Reload the gallery when its folder changed (the embedding cache makes a reload incremental)."""
        if self.gallery_dir is None:
            return
        try:
            signature = folder_signature(self.gallery_dir)
            if signature == self._signature:
                return
            gallery = self.load_gallery()
        except (OSError, FacewireError) as exc:
            log.warning(kv("gallery-unavailable", path=self.gallery_dir, error=str(exc)[:160]))
            return
        self._signature = signature
        self.stats.set_gallery(gallery.embeddings, gallery.labels, gallery.version, gallery.model_id)
        log.info(kv("gallery-scored", version=gallery.version, photos=len(gallery.labels)))

    def read_confirmations(self) -> None:
        assert self.result_log is not None
        for confirmation in self.result_log.confirmations_after(self._last_confirmation):
            self.stats.apply_confirmation(confirmation)
            self._last_confirmation = confirmation.id

    def publish(self) -> None:
        payload = self.stats.report().to_json()
        self.connection.publish(self.topics.stats_thresholds(), payload, retain=True)
        self.published += 1

    def stop(self) -> None:
        if self.stats.dirty:
            self.publish()
        self.connection.close(final=Will(self.status_topic, self.status("offline")))

    def _on_result(self, message: Message) -> None:
        try:
            result = FaceResult.from_json(message.payload)
        except SchemaError:
            return  # the recorder and alerts subscribers dead-letter bad results; stats only skips them
        self.stats.add_live(result)
