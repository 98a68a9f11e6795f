"""MqttConnection's own in-flight window (issue 21): at most the broker's Receive Maximum QoS-1 publishes
await their PUBACK at once, the rest wait in order; refusals, unheard publishes and a reconnect mid-window
are settled exactly as without it. Every broker here is a real mosquitto."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import cast

import pytest

from facewire.config import MqttSettings
from facewire.mqtt import Message, MqttConnection
from facewire_console.broker import BROKER_CONF, LocalBroker
from tests.broker_support import SecureBroker, start_secure_broker

RECEIVE_MAXIMUM = 8


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """The shipped config with a Receive Maximum of 8 (``max_inflight_messages``) instead of 1,000."""
    config = tmp_path / "small.conf"
    text = BROKER_CONF.read_text().replace("max_inflight_messages 1000", f"max_inflight_messages {RECEIVE_MAXIMUM}")
    assert f"max_inflight_messages {RECEIVE_MAXIMUM}" in text
    config.write_text(text)
    local = LocalBroker(tmp_path / "broker", config=config).start()
    yield local
    local.stop()


class Inbox:
    """Payloads one subscription got, thread-safe."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        with self._lock:
            self.payloads.append(message.payload)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(set(self.payloads)) >= count:
                    break
            time.sleep(0.02)
        with self._lock:
            return list(self.payloads)


def first_seen(payloads: list[bytes]) -> list[bytes]:
    """``payloads`` without repeats (QoS 1 may deliver twice), in the order each first came."""
    return list(dict.fromkeys(payloads))


def connected(url: str, client_id: str, **kwargs: object) -> MqttConnection:
    connection = MqttConnection(MqttSettings(url=url, connect_timeout=5), client_id, **kwargs)  # type: ignore[arg-type]
    connection.connect()
    return connection


def test_publishes_beyond_the_brokers_receive_maximum_wait_their_turn_and_all_arrive_in_order(
    small_broker: LocalBroker,
) -> None:
    inbox = Inbox()
    subscriber = MqttConnection(MqttSettings(url=small_broker.url), "window-subscriber")
    subscriber.subscribe("window/test", inbox)
    subscriber.connect()
    publisher = connected(small_broker.url, "window-publisher")
    acked: list[int] = []
    in_flight, waiting = [], []
    try:
        assert publisher.window.limit == RECEIVE_MAXIMUM, "the window is the broker's Receive Maximum"
        publications = []
        for i in range(300):
            publications.append(publisher.publish("window/test", b"%d" % i, on_acked=partial(acked.append, i)))
            in_flight.append(publisher.window.in_flight)
            waiting.append(publisher.window.waiting)
        assert all(p.wait_for_publish(20) for p in publications)
        got = inbox.wait_for(300)
    finally:
        publisher.close()
        subscriber.close()
    assert max(in_flight) == RECEIVE_MAXIMUM and max(waiting) > 0, "publishes waited for room in the window"
    assert acked == list(range(300)), "each acked once, in the order published"
    assert first_seen(got) == [b"%d" % i for i in range(300)]
    assert publisher.window.in_flight == 0 and publisher.unsettled == 0


def test_a_publish_nobody_hears_is_still_reported_unheard_through_the_window(small_broker: LocalBroker) -> None:
    publisher = connected(small_broker.url, "window-unheard")
    unheard: list[int] = []
    acked: list[int] = []
    try:
        publications = [
            publisher.publish(
                "window/nobody", b"x", on_acked=partial(acked.append, i), on_unheard=partial(unheard.append, i)
            )
            for i in range(40)
        ]
        assert all(p.wait_for_publish(20) for p in publications)
    finally:
        publisher.close()
    assert unheard == list(range(40)) and acked == [], "mosquitto answers 0x10 with no subscriber: on_unheard, in order"


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    secure = start_secure_broker(tmp_path, ["cam-1", "admin"])
    yield secure
    secure.stop()


def test_refused_and_taken_publishes_are_told_apart_through_a_small_window(secure_broker: SecureBroker) -> None:
    """cam-1 may publish on its own embeddings topic, not on cam-2's (the shipped ACL: PUBACK 0x87)."""
    inbox = Inbox()
    watcher = MqttConnection(secure_broker.settings("admin"), "window-admin")
    watcher.subscribe("facewire/embeddings/+", inbox)
    watcher.connect()
    node = MqttConnection(secure_broker.settings("cam-1"), "cam-1", max_inflight=3)
    node.connect()
    acked: list[int] = []
    refused: list[tuple[int, int]] = []
    try:
        assert node.window.limit == 3, "our ceiling wins over the broker's larger Receive Maximum"
        publications = []
        for i in range(40):
            topic = "facewire/embeddings/cam-1" if i % 2 else "facewire/embeddings/cam-2"
            on_refused = partial(lambda n, r: refused.append((n, r.code)), i)
            publications.append(
                node.publish(topic, b"%d" % i, on_acked=partial(acked.append, i), on_refused=on_refused)
            )
        assert all(p.wait_for_publish(20) for p in publications)
        got = inbox.wait_for(20)
    finally:
        node.close()
        watcher.close()
    assert acked == list(range(1, 40, 2)), "every publish the broker took is acked, in order"
    assert refused == [(i, 0x87) for i in range(0, 40, 2)], "every refused one is reported refused, never acked"
    assert first_seen(got) == [b"%d" % i for i in range(1, 40, 2)]


def test_a_connection_lost_mid_window_loses_nothing(small_broker: LocalBroker) -> None:
    inbox = Inbox()
    subscriber = MqttConnection(MqttSettings(url=small_broker.url), "window-subscriber-2", session_expiry=600)
    subscriber.subscribe("window/drop", inbox)
    subscriber.connect()
    publisher = connected(small_broker.url, "window-dropped")
    acked: list[int] = []
    try:
        publications = [
            publisher.publish("window/drop", b"%d" % i, on_acked=partial(acked.append, i)) for i in range(200)
        ]
        assert publisher.window.waiting > 0, "the cut comes while publishes wait for the window"
        sock = cast(socket.socket, publisher.client.socket())
        sock.shutdown(socket.SHUT_RDWR)  # paho sees the connection lost and reconnects (1 s back-off)
        for i in range(200, 300):
            publications.append(publisher.publish("window/drop", b"%d" % i, on_acked=partial(acked.append, i)))
        assert all(p.wait_for_publish(30) for p in publications)
        got = inbox.wait_for(300, timeout=30)
    finally:
        publisher.close()
        subscriber.close()
    assert acked == list(range(300)), "each publish acked exactly once, in order, across the reconnect"
    assert first_seen(got) == [b"%d" % i for i in range(300)], "nothing lost, the order kept"
    assert publisher.window.in_flight == 0 and publisher.window.waiting == 0


def test_a_larger_receive_maximum_after_a_reconnect_keeps_the_order(small_broker: LocalBroker, tmp_path: Path) -> None:
    """Published while the broker is away: 8 go to paho, the rest wait. The broker comes back allowing 32: paho
    re-sends its 8 first, and only their PUBACKs let the waiting ones go, so nothing overtakes them."""
    inbox = Inbox()
    subscriber = MqttConnection(MqttSettings(url=small_broker.url), "window-subscriber-3", session_expiry=600)
    subscriber.subscribe("window/grow", inbox)
    subscriber.connect()
    publisher = connected(small_broker.url, "window-grows")
    small_broker.stop()
    assert _disconnected(publisher)
    acked: list[int] = []
    publications = [publisher.publish("window/grow", b"%d" % i, on_acked=partial(acked.append, i)) for i in range(100)]
    assert publisher.window.in_flight == RECEIVE_MAXIMUM and publisher.window.waiting == 100 - RECEIVE_MAXIMUM
    larger = tmp_path / "larger.conf"
    smaller = f"max_inflight_messages {RECEIVE_MAXIMUM}"
    larger.write_text(small_broker.config.read_text().replace(smaller, "max_inflight_messages 32"))
    small_broker.config = larger
    small_broker.start()
    try:
        assert all(p.wait_for_publish(30) for p in publications)
        got = inbox.wait_for(100, timeout=30)
    finally:
        publisher.close()
        subscriber.close()
    assert publisher.window.limit == 32
    assert acked == list(range(100)), "acked in the order published"
    assert first_seen(got) == [b"%d" % i for i in range(100)], "the waiting ones did not overtake paho's re-sends"


def _disconnected(connection: MqttConnection, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while connection.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    return not connection.connected
