"""A thin, typed wrapper around paho-mqtt: connect or fail loudly, publish, subscribe, ack.

The paho network thread only hands messages to callbacks; services push heavy
work onto their own threads. A refused connection is a :class:`BrokerError`,
never treated as connected. Reconnection after a drop is paho's own loop
(exponential back-off from 1 to 30 s); subscriptions are renewed on every
(re)connect, and persistent sessions (MQTT 5 session expiry) keep QoS-1
messages queued at the broker while a service is away.

QoS-1 publishes are held to a window: at most the broker's Receive Maximum (from CONNACK, capped by
``max_inflight``) are in flight at once, the rest wait here in order and go out as PUBACKs come back.
paho's own window is off (0): it re-scans every in-flight message on each PUBACK, which cost the
classifier a fifth of its time with 1,000 in flight (issue 21); this one costs O(1) per publish and ack.

The client is paho's, with its socket read in bulk (facewire.bulk_client; ``mqtt.bulk_reads``): plain
PUBLISH and PUBACK packets come straight to ``_on_publish_packet`` and the tracker, anything else through
paho's callbacks.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from facewire.bulk_client import BulkClient
from facewire.config import MqttSettings
from facewire.errors import BrokerError, ConfigError
from facewire.logs import kv, moment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://host:port``, ``mqtts://host:port`` or ``host:port``."""
    parsed = urlparse(url if "://" in url else f"mqtt://{url}")
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parsed.hostname:
        raise ConfigError(f"broker URL must look like mqtt://HOST:PORT, got {url!r}")
    tls = parsed.scheme in ("mqtts", "ssl")
    try:
        port = parsed.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ConfigError(f"bad port in broker URL {url!r}") from exc
    return BrokerAddress(parsed.hostname, port, tls)


def broker_password(settings: MqttSettings) -> str | None:
    """The broker password: the first line of ``password_file`` (a Docker secret) when set, else ``password``."""
    if settings.password_file is None:
        return settings.password
    try:
        text = settings.password_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read mqtt.password_file {settings.password_file}: {exc}") from exc
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"mqtt.password_file {settings.password_file} is empty")
    return lines[0]


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class Message:
    """One received message as handlers get it: no paho type leaves this module.

    ``response_topic`` and ``correlation_data`` are the MQTT 5 request/response
    properties (None when the sender set none); ``mid`` and ``qos`` are what
    :meth:`MqttConnection.ack` needs.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None
    mid: int = 0


Handler = Callable[[Message], None]


def _message_of(message: paho.MQTTMessage) -> Message:
    """The :class:`Message` of a paho message (its MQTT 5 request/response properties included)."""
    properties = getattr(message, "properties", None)
    return Message(
        topic=message.topic,
        payload=bytes(message.payload),
        qos=message.qos,
        retain=bool(message.retain),
        response_topic=getattr(properties, "ResponseTopic", None),
        correlation_data=getattr(properties, "CorrelationData", None),
        mid=message.mid,
    )


@dataclass(frozen=True)
class Refusal:
    """The broker's refusal of one publish: a PUBACK reason code >= 0x80 (MQTT 5)."""

    topic: str
    code: int
    reason: str


OnRefused = Callable[[Refusal], None]
NO_MATCHING_SUBSCRIBERS = 0x10
FIRST_FAILURE = 0x80  # MQTT 5: a reason code from here on is a refusal
RECEIVE_MAXIMUM_DEFAULT = 65_535  # MQTT 5: a CONNACK without Receive Maximum allows this many
ROUTES_REMEMBERED = 10_000  # topics whose handlers are remembered (one per node and kind, in practice)
MAX_INFLIGHT = 1_000  # our own ceiling: the shipped broker's receive maximum (broker/mosquitto.conf)


def reason_name(code: int) -> str:
    """The MQTT 5 name of a PUBACK reason code ("Not authorized" for 0x87...)."""
    try:
        return str(paho.ReasonCode(PacketTypes.PUBACK, identifier=code))
    except (KeyError, ValueError):  # not a PUBACK reason code MQTT 5 defines
        return f"reason code {code:#04x}"


class Publication:
    """One publish handed to :meth:`MqttConnection.publish`: published once the broker has answered it
    (QoS 1: its PUBACK, whatever the reason code; QoS 0: written to the socket)."""

    __slots__ = ("_done", "_event")
    _lock = threading.Lock()  # one for all: an Event is made only for a publish somebody waits for

    def __init__(self) -> None:
        self._done = False
        self._event: threading.Event | None = None

    def wait_for_publish(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the broker's answer; True if it came."""
        with Publication._lock:
            if self._done:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def settled(self) -> None:
        with Publication._lock:
            self._done = True
            event = self._event
        if event is not None:
            event.set()


@dataclass(frozen=True)
class Settlers:
    """What to run when the broker settles one publish."""

    topic: str
    on_acked: Callable[[], None] | None
    on_refused: OnRefused
    on_unheard: Callable[[], None] | None = None
    publication: Publication | None = None
    release: Callable[[], None] | None = None  # frees its place in the in-flight window

    def settle(self, code: int) -> None:
        """Run the callback that ``code`` (the PUBACK's reason code) calls for, then mark it published."""
        try:
            if code >= FIRST_FAILURE:
                self.on_refused(Refusal(self.topic, code, reason_name(code)))
            elif code == NO_MATCHING_SUBSCRIBERS and self.on_unheard is not None:
                self.on_unheard()
            elif self.on_acked is not None:
                self.on_acked()
        finally:
            if self.release is not None:
                self.release()
            if self.publication is not None:
                self.publication.settled()


@dataclass(frozen=True)
class Outgoing:
    """A QoS >= 1 publish waiting for room in the in-flight window."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None
    settlers: Settlers


class InflightWindow:
    """At most ``limit`` QoS >= 1 publishes in flight; the others wait in order. O(1) per publish and ack.

    ``admit`` lets a publish through when there is room and nothing waits before it. ``ready`` hands
    the waiting publishes that now fit to one sender at a time (``sent`` when they are with paho), so a
    publish admitted meanwhile never overtakes one taken from the queue before it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._waiting: deque[Outgoing] = deque()
        self._sending = False
        self._lock = threading.Lock()

    def admit(self, outgoing: Outgoing) -> bool:
        """True: send ``outgoing`` now (its place is taken); False: it waits its turn here."""
        with self._lock:
            if self.in_flight < self.limit and not self._waiting and not self._sending:
                self.in_flight += 1
                return True
            self._waiting.append(outgoing)
            return False

    def settled(self) -> None:
        """One publish in flight has been answered (or failed to go out)."""
        with self._lock:
            self.in_flight -= 1

    def resize(self, limit: int) -> None:
        with self._lock:
            self.limit = limit

    def ready(self) -> list[Outgoing]:
        """The waiting publishes that fit now, their places taken; empty while another sender sends."""
        with self._lock:
            if self._sending:
                return []
            batch = []
            while self._waiting and self.in_flight < self.limit:
                batch.append(self._waiting.popleft())
                self.in_flight += 1
            self._sending = bool(batch)
            return batch

    def sent(self) -> None:
        with self._lock:
            self._sending = False

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)


class PublishTracker:
    """Runs a callback once the broker has settled a publish: ``on_acked`` if it took it, ``on_refused`` if not.

    paho 2 reports every PUBACK, refusals included (reason code >= 0x80, e.g. 0x87 not authorised by the
    ACL); a refused publish is never a delivery. A publish the broker took but had no subscriber for
    (0x10; mosquitto 2.0 answers it for a shared subscription not yet restored after a restart) runs
    ``on_unheard`` where the publisher asked for it, else ``on_acked``. paho may report the PUBACK before
    ``publish()`` has returned its mid to us; such early mids are remembered with their reason code. Every publish of a
    connection goes through the tracker, so no early mid is left behind. No lock is held while paho code
    runs (holding one caused a deadlock with paho's own mutexes).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Settlers] = {}
        self._early: dict[int, int] = {}

    def track(self, mid: int, settlers: Settlers) -> None:
        with self._lock:
            early = self._early.pop(mid, None)
            if early is None:
                self._callbacks[mid] = settlers
        if early is not None:
            settlers.settle(early)

    def acknowledged(self, mid: int, code: int) -> None:
        """The broker answered publish ``mid`` with reason code ``code``."""
        with self._lock:
            if mid not in self._callbacks:
                self._early[mid] = code
                return
            settlers = self._callbacks.pop(mid)
        settlers.settle(code)

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._callbacks)


class MqttConnection:
    """One MQTT 5 client connection with a last will, subscriptions and optional manual acks."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        will: Will | None = None,
        session_expiry: int = 0,
        manual_ack: bool = False,
        receive_maximum: int = 0,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        """``receive_maximum``: how many unacked QoS-1 messages the broker may send us (0: its default);
        ``max_inflight``: how many of our QoS-1 publishes may await their PUBACK at once, at most (the
        broker's Receive Maximum, if lower, wins)."""
        self.settings = settings
        self.address = parse_broker_url(settings.url)
        self.client_id = client_id
        self.session_expiry = session_expiry
        self.receive_maximum = receive_maximum
        self._manual_ack = manual_ack
        self._subscriptions: dict[str, tuple[int, Handler]] = {}
        self._filters: dict[str, Handler] = {}  # topic filter as messages are matched against it -> handler
        self._routes: dict[str, list[Handler]] = {}  # topic -> handlers of the filters it matches (a cache)
        self._connected = threading.Event()
        self._connack: threading.Event = threading.Event()
        self._refusal: str | None = None
        self._pending_subscriptions: dict[int, list[str]] = {}
        self._subscribed = threading.Condition()
        self._refused_subscriptions: list[str] = []
        self._refusals_logged: set[tuple[str, int]] = set()
        self.tracker = PublishTracker()
        self.max_inflight = max_inflight
        self.window = InflightWindow(0)  # opened by CONNACK, to the broker's Receive Maximum
        self.on_connection_change: Callable[[bool], None] | None = None
        # Called with the time the connection was lost when a reconnect may have missed messages: the persistent
        # session is gone (the broker crashed before snapshotting it), or it holds a shared subscription, which
        # mosquitto 2 does not restore after a restart until the client subscribes again. What was queued, and
        # what was published before the new SUBSCRIBE, never reaches this client.
        self.on_messages_missed: Callable[[float], None] | None = None
        self._lost_at: float | None = None  # wall time the last connection ended; None before the first
        # Wall time up to which an earlier run of this client handled its messages durably (a subscriber's newest
        # stored result), if it knows: its first connect is then judged like a reconnect after a connection lost
        # at that time, so a restart that finds its session gone asks for what it missed too.
        self.resume_after: float | None = None
        self.client: paho.Client
        if settings.bulk_reads:
            self.client = BulkClient(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=paho.MQTTv5,
                manual_ack=manual_ack,
                on_publish_packet=self._on_publish_packet,
                on_puback_packet=self.tracker.acknowledged,
            )
        else:
            self.client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=manual_ack
            )
        self.client.reconnect_delay_set(1, 30)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(0)  # unlimited in paho: self.window bounds what is in flight
        if settings.username:
            self.client.username_pw_set(settings.username, broker_password(settings))
        if self.address.tls:
            self.client.tls_set(
                ca_certs=str(settings.tls_ca) if settings.tls_ca else None,
                certfile=str(settings.tls_cert) if settings.tls_cert else None,
                keyfile=str(settings.tls_key) if settings.tls_key else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            self.set_will(will)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    def set_will(self, will: Will) -> None:
        """The message the broker publishes if this client vanishes (set before connect)."""
        self.client.will_set(will.topic, will.payload, qos=1, retain=will.retain)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        """Register ``handler`` for ``topic``; (re)subscribed on every connect."""
        self._subscriptions[topic] = (qos, handler)
        delivered_as = topic.split("/", 2)[2] if topic.startswith("$share/") else topic
        self._filters[delivered_as] = handler
        self._routes = {}
        if self.connected:
            with self._subscribed:
                _rc, mid = self.client.subscribe(topic, qos=qos)
                if mid is not None:
                    self._pending_subscriptions[mid] = [topic]

    def connect(self) -> None:
        """Connect and start the network thread; raise BrokerError if refused or unreachable."""
        properties = Properties(PacketTypes.CONNECT)
        if self.session_expiry:
            properties.SessionExpiryInterval = self.session_expiry
        if self.receive_maximum:
            properties.ReceiveMaximum = self.receive_maximum
        try:
            self.client.connect(
                self.address.host,
                self.address.port,
                keepalive=self.settings.keepalive,
                clean_start=self.session_expiry == 0,
                properties=properties,
            )
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot reach broker at {self.settings.url}: {exc}") from exc
        self.client.loop_start()
        if not self._connack.wait(self.settings.connect_timeout):
            self.client.loop_stop()
            raise BrokerError(f"no CONNACK from {self.settings.url} within {self.settings.connect_timeout}s")
        if self._refusal is not None:
            self.client.loop_stop()
            raise BrokerError(f"broker refused connection: {self._refusal}")
        self._check_subscriptions()

    def _check_subscriptions(self) -> None:
        """Wait for the SUBACKs of the first connection; a refused subscription is a start-up error."""
        with self._subscribed:
            self._subscribed.wait_for(lambda: not self._pending_subscriptions, self.settings.connect_timeout)
            refused = list(self._refused_subscriptions)
        if refused:
            self.close()
            raise BrokerError(f"broker refused subscription {'; '.join(refused)} (check the broker ACL for this user)")

    def connect_in_background(self) -> None:
        """Start the network thread without waiting: paho keeps retrying (1..30 s) until the broker answers."""
        properties = Properties(PacketTypes.CONNECT)
        if self.session_expiry:
            properties.SessionExpiryInterval = self.session_expiry
        if self.receive_maximum:
            properties.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(
            self.address.host,
            self.address.port,
            keepalive=self.settings.keepalive,
            clean_start=self.session_expiry == 0,
            properties=properties,
        )
        self.client.loop_start()

    @property
    def refusal(self) -> str | None:
        """The broker's reason for refusing the last connection attempt (bad credentials...), if it did."""
        return self._refusal

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def lost_at(self) -> float | None:
        """Wall time the last connection ended (None before the first ended)."""
        return self._lost_at

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_acked: Callable[[], None] | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        on_refused: OnRefused | None = None,
        on_unheard: Callable[[], None] | None = None,
    ) -> Publication:
        """Queue a publish (kept across a reconnect at QoS >= 1; at QoS 1 it waits for room in the window).

        ``on_acked`` runs when the broker takes it, ``on_refused`` when it refuses it (PUBACK reason code
        >= 0x80); without ``on_refused`` a refusal is logged once per topic and reason. A refused publish
        never runs ``on_acked``, so nothing acknowledges a message whose outcome the broker refused.
        ``on_unheard``, if given, runs instead of ``on_acked`` when the broker took it but had no subscriber.
        """
        properties = None
        if response_topic is not None or correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation_data is not None:
                properties.CorrelationData = correlation_data
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"cannot publish on {topic!r}")  # as paho would, before it can wait in the window
        publication = Publication()
        release = self._release if qos > 0 else None
        settlers = Settlers(topic, on_acked, on_refused or self.log_refusal, on_unheard, publication, release)
        outgoing = Outgoing(topic, payload, qos, retain, properties, settlers)
        if qos == 0 or self.window.admit(outgoing):
            self._send(outgoing)
        return publication

    def _send(self, out: Outgoing) -> None:
        try:
            info = self.client.publish(out.topic, out.payload, out.qos, out.retain, out.properties)
        except Exception:
            if out.qos > 0:
                self.window.settled()
            raise
        self.tracker.track(info.mid, out.settlers)

    def _release(self) -> None:
        """A QoS-1 publish was answered: its place in the window goes to the next one waiting."""
        self.window.settled()
        self._send_waiting()

    def _send_waiting(self) -> None:
        while batch := self.window.ready():
            try:
                for outgoing in batch:
                    try:
                        self._send(outgoing)
                    except Exception:  # one paho will not take (its payload...) must not hold up the rest
                        log.exception(kv("publish-failed", topic=outgoing.topic, client=self.client_id))
            finally:
                self.window.sent()

    @property
    def unsettled(self) -> int:
        """Publishes not yet answered by the broker: in flight or waiting for room in the window."""
        return self.tracker.outstanding + self.window.waiting

    def log_refusal(self, refusal: Refusal) -> None:
        """Log ``refusal`` as an error, once per topic and reason code (the default ``on_refused``)."""
        key = (refusal.topic, refusal.code)
        if key in self._refusals_logged:
            return
        self._refusals_logged.add(key)
        user = self.settings.username or "(anonymous)"
        log.error(kv("publish-refused", user=user, topic=refusal.topic, reason=refusal.reason, client=self.client_id))

    def ack(self, message: Message) -> None:
        """Acknowledge a message received with ``manual_ack`` once its effect is durable."""
        self.client.ack(message.mid, message.qos)

    def close(self, final: Will | None = None, timeout: float = 5.0) -> None:
        """Optionally publish a final (retained) message, then disconnect cleanly."""
        if final is not None and self.connected:
            settled = self.publish(final.topic, final.payload, retain=final.retain).wait_for_publish(timeout)
            if not settled:
                log.warning(kv("final-publish-failed", topic=final.topic))
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes its wake-up socket pair only when the client is garbage-collected; close it now so
        # no ResourceWarning surfaces at a random later moment (the tests turn warnings into errors).
        self.client._reset_sockets(sockpair_only=True)

    def _handlers(self, topic: str) -> list[Handler]:
        """The handlers of every subscription ``topic`` matches, remembered per topic: paho's own per-filter
        callbacks walk its topic tree for every message (7 % of the classifier's time, issue 21)."""
        handlers = self._routes.get(topic)
        if handlers is None:
            handlers = [handler for sub, handler in self._filters.items() if paho.topic_matches_sub(sub, topic)]
            if len(self._routes) >= ROUTES_REMEMBERED:
                self._routes = {}
            self._routes[topic] = handlers
        return handlers

    def _on_connect(
        self, client: paho.Client, _u: object, flags: object, reason: paho.ReasonCode, properties: object
    ) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            self._connack.set()
            return
        self._refusal = None
        self.window.resize(min(self.max_inflight, getattr(properties, "ReceiveMaximum", RECEIVE_MAXIMUM_DEFAULT)))
        if self._subscriptions:
            topics = list(self._subscriptions)
            with self._subscribed:
                _rc, mid = client.subscribe([(topic, self._subscriptions[topic][0]) for topic in topics])
                if mid is not None:
                    self._pending_subscriptions[mid] = topics
        self._connected.set()
        self._connack.set()
        if not self.window.in_flight:  # else paho re-sends those first and their PUBACKs let the waiting go
            self._send_waiting()
        log.info(kv("mqtt-connected", url=self.settings.url, client=self.client_id))
        if self.on_connection_change:
            self.on_connection_change(True)
        lost_at = self._lost_at if self._lost_at is not None else self.resume_after
        if self.session_expiry and lost_at is not None:
            if not getattr(flags, "session_present", True):
                log.warning(kv("mqtt-session-lost", client=self.client_id, disconnected_at=moment(lost_at)))
            elif not any(topic.startswith("$share/") for topic in self._subscriptions):
                return
            if self.on_messages_missed:
                self.on_messages_missed(lost_at)

    def _on_disconnect(self, _c: paho.Client, _u: object, _f: object, reason: paho.ReasonCode, _p: object) -> None:
        if self._connected.is_set():
            self._lost_at = time.time()
        self._connected.clear()
        if reason.is_failure:
            log.warning(kv("mqtt-disconnected", reason=str(reason), client=self.client_id))
        if self.on_connection_change:
            self.on_connection_change(False)

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        """A message paho decoded itself (one with MQTT 5 properties, a request...)."""
        self._route(_message_of(message))

    def _on_publish_packet(self, topic: str, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        """A plain message, as the bulk reader hands it on."""
        self._route(Message(topic, payload, qos, retain, None, None, mid))

    def _route(self, message: Message) -> None:
        topic = message.topic
        handlers = self._handlers(topic)
        for handler in handlers:
            try:
                handler(message)
            except Exception:  # a bug in one handler must not kill the network thread
                log.exception(kv("handler-failed", topic=topic))
        if handlers:
            return
        # No handler (yet): with manual ack the message is acknowledged and gone. Register handlers before
        # connecting, or a resumed session's queued messages land here (a lost embedding, found in issue 8).
        log.warning(kv("unrouted-message-dropped", topic=topic, client=self.client_id))
        if self._manual_ack and message.qos > 0:
            self.client.ack(message.mid, message.qos)

    def _on_publish(self, _c: paho.Client, _u: object, mid: int, reason: paho.ReasonCode, _p: object) -> None:
        self.tracker.acknowledged(mid, reason.value)

    def _on_subscribe(self, _c: paho.Client, _u: object, mid: int, reasons: list[paho.ReasonCode], _p: object) -> None:
        with self._subscribed:
            topics = self._pending_subscriptions.pop(mid, [])
            for topic, reason in zip(topics, reasons, strict=False):
                if reason.is_failure:
                    self._refused_subscriptions.append(f"{topic}: {reason}")
                    user = self.settings.username or "(anonymous)"
                    log.error(kv("subscription-refused", user=user, topic=topic, reason=str(reason)))
            self._subscribed.notify_all()
