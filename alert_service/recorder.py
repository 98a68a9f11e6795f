"""The recorder: every FaceResult into the detection log, batched, acked after commit, retention in the background."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from alert_service.store import LogRow, ResultLog
from alert_service.subscriber import Received, ResultSubscriber, take_batch
from facewire.config import RecorderSettings
from facewire.logs import kv
from facewire.mqtt import MqttConnection
from facewire.schema import DeadLetter
from facewire.storage.url import configured
from facewire.topics import Topics

log = logging.getLogger(__name__)


class Recorder(ResultSubscriber):
    """Writes results in batches (INSERT OR IGNORE on (node, seq)); acks each message once its batch is committed."""

    service = "recorder"

    def __init__(
        self,
        store: ResultLog,
        connection: MqttConnection,
        topics: Topics,
        settings: RecorderSettings,
        instance: str,
    ) -> None:
        super().__init__(connection, topics, instance, settings.share_group, store.newest_decided_at())
        self.store = store
        self.settings = settings
        self.received = 0
        self.inserted = 0
        self.retention = RetentionThread(store, settings)

    def counters(self) -> dict[str, Any]:
        database = str(configured(self.settings.database_url, self.settings.database))  # password redacted
        return {"received": self.received, "inserted": self.inserted, "database": database}

    def start(self) -> None:
        self.retention.start()
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.retention.stop()

    def erase(self, person: str, marker: str) -> None:
        self.store.erase_person(person, marker)

    def work(self, timeout: float) -> None:
        batch = take_batch(self.inbox, self.settings.batch_max, self.settings.batch_wait_ms / 1000.0, timeout)
        if not batch:
            return
        try:
            added = self.store.insert([LogRow.from_result(self.scrub(item.result)) for item in batch])
        except Exception as exc:  # a locked or full disk: retried, never acked unwritten; or one poison row
            batch, added = self._one_by_one(batch, exc)
            if not batch:
                return
        self.received += len(batch)
        self.inserted += added
        log.debug(kv("batch-recorded", size=len(batch), added=added))
        for item in batch:
            self.ack(item)

    def _one_by_one(self, batch: list[Received], error: Exception) -> tuple[list[Received], int]:
        """After a failed batch, write its results one at a time. If none goes in, the store is at fault: all
        are retried later. If some do, each one that fails alone twice (a lock may lift meanwhile) is poison:
        dead-lettered and acked, so it can neither stall the recorder nor come back on every reconnect."""
        written, refused, added = self._each(batch)
        if not written:
            self.retry_later(batch, error)
            return [], 0
        again, refused, more = self._each([item for item, _cause in refused])
        for item, cause in refused:
            detail = f"{type(cause).__name__}: {cause}"[:200]
            letter = DeadLetter("write-failed", detail, item.message.topic, item.message.payload)
            self._dead_letter(item.message, letter)
        return written + again, added + more

    def _each(self, items: list[Received]) -> tuple[list[Received], list[tuple[Received, Exception]], int]:
        """Insert ``items`` one by one: (written, refused with the error, rows added)."""
        written: list[Received] = []
        refused: list[tuple[Received, Exception]] = []
        added = 0
        for item in items:
            try:
                added += self.store.insert([LogRow.from_result(self.scrub(item.result))])
                written.append(item)
            except Exception as failure:
                refused.append((item, failure))
        return written, refused, added


class RetentionThread:
    """Deletes rows beyond the retention bounds every ``retention_interval`` seconds."""

    def __init__(self, store: ResultLog, settings: RecorderSettings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.deleted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recorder-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30.0)

    def run_once(self) -> int:
        deleted = self.store.enforce_retention(self.settings.retention_days, self.settings.retention_rows, self.clock())
        self.deleted += deleted
        if deleted:
            log.info(kv("retention", deleted=deleted))
        return deleted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a failed purge is retried next interval
                log.exception(kv("retention-failed"))
            self._stop.wait(self.settings.retention_interval)
