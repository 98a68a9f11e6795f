"""The monitor's thin MQTT adapter: subscribe to everything it shows, feed MonitorState, keep reconnecting.

The network thread only parses and stores (a few microseconds per message);
drawing happens on the main thread. When the broker goes away the state says
``connected = False`` (the screen shows "disconnected") and paho reconnects
every 1-2 s; if the broker is not there at start, connecting is retried in a
background thread so the screen comes up at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from facewire.config import MqttSettings
from facewire.errors import BrokerError
from facewire.logs import kv
from facewire.mqtt import Message, MqttConnection, Will
from facewire.topics import Topics
from facewire_console.monitor.state import MonitorState

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
Listener = Callable[[str, bytes], None]


def monitor_subscriptions(topics: Topics) -> list[str]:
    """Every topic the monitor listens to."""
    return [
        topics.results_all(),
        topics.node_status_all(),
        topics.service_status_all(),
        topics.alerts_all(),
        topics.stats_thresholds(),
        topics.deadletter_all(),
    ]


class MonitorClient:
    """One MQTT connection that feeds every monitored message into a MonitorState (and extra listeners)."""

    def __init__(self, settings: MqttSettings, state: MonitorState, listeners: list[Listener] | None = None):
        self.state = state
        self.listeners = listeners or []
        self.connection = MqttConnection(settings, f"facewire-monitor-{socket.gethostname()}-{os.getpid()}")
        self.connection.client.reconnect_delay_set(1, 2)
        self.connection.on_connection_change = self._on_change
        self._stop = threading.Event()
        self._starter: threading.Thread | None = None
        self.final: Will | None = None  # published (retained) on a clean close, e.g. an offline status
        state.broker = settings.url
        for topic in monitor_subscriptions(state.topics):
            self.connection.subscribe(topic, self._on_message)

    def start(self) -> None:
        """Connect in the background, retrying until the broker answers or :meth:`close` is called."""
        self._starter = threading.Thread(target=self._connect_until_up, name="monitor-connect", daemon=True)
        self._starter.start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connection.wait_connected(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._starter is not None:
            self._starter.join(5.0)
        self.connection.close(final=self.final)

    def _connect_until_up(self) -> None:
        while not self._stop.is_set():
            try:
                self.connection.connect()
                return
            except BrokerError as exc:
                log.info(kv("monitor-connect-failed", error=str(exc)[:120]))
                self._stop.wait(RETRY_SECONDS)

    def _on_change(self, connected: bool) -> None:
        self.state.connected = connected

    def _on_message(self, message: Message) -> None:
        self.state.ingest(message.topic, message.payload)
        for listener in self.listeners:
            listener(message.topic, message.payload)
