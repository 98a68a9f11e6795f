"""Alert delivery: a background thread hands each alert to its channels (the JSON webhook, Apprise) with a
timeout and retries; never blocks callers."""

from __future__ import annotations

import contextlib
import http.client
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Protocol

from facewire.logs import kv
from facewire.schema import Alert

log = logging.getLogger(__name__)
StatusCallback = Callable[[str, str], None]
# What a failed delivery may raise: network errors, HTTP errors, a refusal (ValueError).
DELIVERY_ERRORS = (OSError, urllib.error.URLError, http.client.HTTPException, ValueError)


class Channel(Protocol):
    """Somewhere alerts go: ``send`` raises one of DELIVERY_ERRORS when the alert did not get there."""

    name: str

    def send(self, alert: Alert, timeout: float) -> None: ...


class WebhookChannel:
    """POST the alert's JSON to a URL; any 2xx status is a delivery."""

    name = "webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, alert: Alert, timeout: float) -> None:
        request = urllib.request.Request(
            self.url, data=alert.to_json(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if not 200 <= response.status < 300:
                raise ValueError(f"HTTP {response.status}")


class AlertSender:
    """Bounded queue + one sender thread. A full queue drops (and reports) the alert instead of waiting."""

    def __init__(
        self,
        channels: Sequence[Channel],
        timeout: float,
        retries: int,
        queue_max: int,
        on_status: StatusCallback | None = None,
        backoff: float = 1.0,
    ) -> None:
        self.channels = list(channels)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.on_status = on_status
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(queue_max)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)

    def start(self) -> AlertSender:
        self._thread.start()
        return self

    def submit(self, alert: Alert) -> bool:
        """Queue ``alert`` for delivery; False (and status 'dropped') if the queue is full."""
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.warning(kv("alert-dropped", alert=alert.id))
            self._report(alert.id, "dropped: queue full")
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the delivery in progress; alerts still queued are left (their status says so)."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)

    def deliver(self, alert: Alert) -> str:
        """Send ``alert`` to every channel, each with retries; returns the final status text."""
        outcomes = [self._deliver_to(channel, alert) for channel in self.channels]
        if len(outcomes) == 1:
            return outcomes[0]
        text = "; ".join(f"{channel.name}: {outcome}" for channel, outcome in zip(self.channels, outcomes, strict=True))
        return ("failed: " if any(outcome.startswith("failed") for outcome in outcomes) else "sent: ") + text

    def _deliver_to(self, channel: Channel, alert: Alert) -> str:
        error = ""
        for attempt in range(self.retries + 1):
            if attempt and self._stop.wait(self.backoff * 2 ** (attempt - 1)):
                return f"failed: stopped ({error})"
            try:
                channel.send(alert, self.timeout)
                return f"sent (attempt {attempt + 1})"
            except DELIVERY_ERRORS as exc:
                error = str(getattr(exc, "reason", exc))[:120]
                log.warning(
                    kv("alert-send-failed", channel=channel.name, alert=alert.id, attempt=attempt + 1, error=error)
                )
        return f"failed after {self.retries + 1} attempts: {error}"

    def _run(self) -> None:
        while not self._stop.is_set():
            alert = self._queue.get()
            if alert is None:
                return
            status = self.deliver(alert)
            if status.startswith("sent"):
                self.sent += 1
            else:
                self.failed += 1
            self._report(alert.id, status)

    def _report(self, key: str, status: str) -> None:
        if self.on_status is None:
            return
        try:
            self.on_status(key, status)
        except Exception:  # a failed status write must not stop deliveries
            log.exception(kv("alert-status-failed", alert=key))
