"""Sends the spool to the broker in order, a window at a time, while connected.

Entries are handed to paho only while the connection is up, in id order, and
are marked acknowledged on the broker's PUBACK. After every (re)connect the
forwarder rewinds to the first entry acknowledged within the last
``resend_seconds`` before the connection was lost (or still unacknowledged)
and sends from there: a broker that crashed lost whatever it accepted since its
last persistence snapshot, and this re-send restores it. While disconnected the
spool keeps those acknowledged entries, however long the outage
(facewire.replay.lost_since). The duplicates this makes are absorbed by the
consumers, which are idempotent on (node, seq). An entry the broker refuses
(PUBACK reason >= 0x80) is not a delivery: it moves to the spool's ``refused``
table, is counted, and each reason is logged once with its remedy. Nor is an
entry the broker took with no subscriber for it (0x10: no classifier connected
yet, e.g. its shared subscription after a broker restart): it stays in the
spool, sending pauses, and the forwarder re-sends from it after a back-off
(1 s, doubling to ``MAX_UNHEARD_BACKOFF``) until a subscriber takes it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from edge_agent.spool import Spool
from facewire.logs import kv
from facewire.mqtt import MqttConnection, Refusal
from facewire.replay import lost_since

log = logging.getLogger(__name__)

NOT_AUTHORIZED = 0x87
MAX_UNHEARD_BACKOFF = 10.0


def refusal_remedy(user: str | None, refusal: Refusal) -> str:
    """What the operator should read about a refused publish: who may not do what, and what to fix."""
    who = f"user {user}" if user else "an anonymous client"
    if refusal.code == NOT_AUTHORIZED:
        return (
            f"{who} may not publish on {refusal.topic}: node id must equal the MQTT username"
            " (and mqtt.topic_prefix the prefix the broker ACL was written for)"
        )
    return f"the broker refused a publish of {who} on {refusal.topic}: {refusal.reason}"


class Forwarder:
    """A background thread draining ``spool`` into ``connection`` with at most ``window`` unacknowledged."""

    def __init__(self, spool: Spool, connection: MqttConnection, window: int = 500, resend_seconds: float = 0.0):
        self.spool = spool
        self.connection = connection
        self.window = window
        self.resend_seconds = resend_seconds
        self._cursor = 0
        self._in_flight: set[int] = set()
        self.refused = 0  # entries refused by the broker during this run
        self.unheard = 0  # publishes the broker took with no subscriber (kept and re-sent)
        self._unheard_from: int | None = None  # lowest entry to re-send once the back-off is over
        self._retry_at = 0.0
        self._backoff = 1.0
        self._reasons_logged: set[tuple[int, str]] = set()
        self._resend_since: float | None = None  # acknowledged entries from then on are re-sent
        self._rewind = threading.Event()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spool-forwarder", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def put(self, topic: str, payload: bytes) -> None:
        """Spool one message; it is published as soon as the connection allows."""
        self.spool.put(topic, payload)
        self._wake.set()

    def connection_changed(self, connected: bool) -> None:
        """Called on every (dis)connect: after a connect, re-send the recent past, then go on."""
        if connected:
            self._rewind.set()
        elif self.resend_seconds > 0:
            self.spool.hold_acked_from = self._resend_from()
        self._wake.set()

    def _resend_from(self) -> float:
        """The earliest acknowledgement the broker may have lost: ``resend_seconds`` before the last lost
        connection (and its detection), or before now if none was lost yet."""
        lost_at = self.connection.lost_at
        if lost_at is None:
            return time.time() - self.resend_seconds
        return lost_since(lost_at, self.connection.settings.keepalive, self.resend_seconds)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._rewind.is_set():
                self._rewind.clear()
                self._rewind_cursor()
            if self._waiting_for_subscriber():
                continue
            if self.connection.connected:
                self._send_next()

    def _rewind_cursor(self) -> None:
        since = self._resend_from() if self.resend_seconds > 0 else None
        with self._lock:
            self._cursor, self._resend_since = 0, since
            self._in_flight.clear()  # paho re-sends its own; their late acks are harmless
        log.info(kv("spool-rewind", depth=self.spool.depth, resend_seconds=self.resend_seconds))

    def _waiting_for_subscriber(self) -> bool:
        """True during the back-off after an unheard publish; at its end, rewind to the first unheard entry
        (the re-send after a reconnect, which includes acknowledged entries, goes on until all are heard)."""
        with self._lock:
            if self._unheard_from is None:
                return False
            if time.monotonic() < self._retry_at:
                return True
            # Never forward: a reconnect's rewind (cursor 0) may have come during the back-off, after paho's
            # re-sends of the old connection's in-flight entries were unheard (CI: 308 entries skipped).
            self._cursor, self._unheard_from = min(self._cursor, self._unheard_from - 1), None
            self._in_flight.clear()
        return False

    def _send_next(self) -> None:
        with self._lock:
            room = self.window - len(self._in_flight)
            since = self._resend_since
        if room <= 0:
            return
        entries = self.spool.after(self._cursor, room, acked_since=since)
        for entry in entries:
            with self._lock:
                self._in_flight.add(entry.id)
                self._cursor = entry.id
            self.connection.publish(
                entry.topic,
                entry.payload,
                on_acked=functools.partial(self._acked, entry.id),
                on_refused=functools.partial(self._refused, entry.id),
                on_unheard=functools.partial(self._unheard, entry.id),
            )
        if entries:
            log.debug(kv("spool-sent", count=len(entries), depth=self.spool.depth))
            self._wake.set()  # more may be waiting; the window check throttles us
        elif since is not None:
            # The re-send is done once every entry of it was heard, then only new entries go. An entry whose
            # re-send found no subscriber (0x10) was acknowledged before the crash: the retry must include it.
            with self._lock:
                done = not self._in_flight and self._unheard_from is None
                if done:
                    self._resend_since = None
            if done:
                self.spool.hold_acked_from = None

    def _acked(self, entry_id: int) -> None:
        self.spool.acknowledged(entry_id)
        with self._lock:
            self._in_flight.discard(entry_id)
            self._backoff = 1.0
        self._wake.set()

    def _unheard(self, entry_id: int) -> None:
        with self._lock:
            self._in_flight.discard(entry_id)
            self.unheard += 1
            first = self._unheard_from is None
            self._unheard_from = entry_id if first else min(entry_id, self._unheard_from or entry_id)
            if first:
                self._retry_at = time.monotonic() + self._backoff
                backoff, self._backoff = self._backoff, min(self._backoff * 2, MAX_UNHEARD_BACKOFF)
        if first:
            log.warning(
                kv(
                    "no-subscriber",
                    entry=entry_id,
                    retry_in=backoff,
                    depth=self.spool.depth,
                    remedy="no classifier subscribed yet (starting, or the broker restarted); kept in the spool",
                )
            )

    def _refused(self, entry_id: int, refusal: Refusal) -> None:
        self.spool.refuse(entry_id, refusal.code, refusal.reason)
        with self._lock:
            self._in_flight.discard(entry_id)
            self.refused += 1
            first = (refusal.code, refusal.topic) not in self._reasons_logged
            self._reasons_logged.add((refusal.code, refusal.topic))
        if first:
            remedy = refusal_remedy(self.connection.settings.username, refusal)
            log.error(kv("publish-refused", reason=refusal.reason, remedy=remedy, spool=str(self.spool.path)))
        self._wake.set()
