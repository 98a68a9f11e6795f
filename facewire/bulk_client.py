"""paho's MQTT client, reading its socket in bulk and handing plain PUBLISH and PUBACK packets straight on.

paho reads every packet with three or four ``recv`` calls (the command byte, each byte of the remaining
length, then the rest) and builds a ``ReasonCode``, a ``Properties`` and an ``MQTTMessage`` for each, under
several locks. At the classifier's rates that was most of its time (issue 21, BENCHMARKS.md). Here one
``recv`` takes whatever the socket holds, every complete packet in it is handled, and the rest waits for
more bytes:

- a PUBLISH at QoS 0 or 1 without MQTT 5 properties goes to ``on_publish_packet(topic, payload, qos,
  retain, mid)``; at QoS 1 without manual acks it is acknowledged, as paho does;
- a PUBACK settles the publish in paho's own books (so a reconnect re-sends only what is unanswered) and
  goes to ``on_puback_packet(mid, reason_code)``;
- anything else (CONNACK, SUBACK, PINGRESP, DISCONNECT, QoS 2, a PUBLISH with properties, a topic that is
  not UTF-8) goes through paho's own handler, unchanged.

On the way out, paho writes a byte to its wake-up socket for every packet queued, so its network thread
leaves ``select()``; here a byte is written only when none is pending (the flag is cleared before each
write pass, so a packet queued after it wakes the loop again).

It relies on paho 2.2's internals (``_sock``, ``_in_packet``, ``_out_messages``, ``_out_packet``,
``_packet_handle``), so pyproject pins paho-mqtt to 2.2; ``tests/test_bulk_client.py`` checks the
behaviour against a real broker. ``mqtt.bulk_reads = false`` runs paho's own client instead.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket

READ_SIZE = 256 * 1024  # bytes taken from the socket at once
MAX_LENGTH_BYTES = 4  # the MQTT remaining length is at most four bytes long

OnPublishPacket = Callable[[str, bytes, int, bool, int], None]
OnPubackPacket = Callable[[int, int], None]


MALFORMED = (-1, -1)


def _frame(buffer: bytearray, start: int) -> tuple[int, int] | None:
    """Where the body of the packet at ``start`` begins and ends; None until all of it has arrived,
    ``MALFORMED`` if its remaining length runs past four bytes."""
    at, length, shift = start + 1, 0, 0
    while True:
        if at >= len(buffer):
            return None
        byte = buffer[at]
        at += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 7 * MAX_LENGTH_BYTES:
            return MALFORMED
    return (at, at + length) if at + length <= len(buffer) else None


def _paho_packet(command: int = 0, body: bytes = b"") -> Any:
    """paho's ``_in_packet``: holding one whole packet (``command``, ``body``), or between packets (no args)."""
    return {"command": command, "have_remaining": int(bool(command)), "remaining_count": [], "remaining_mult": 1,
            "remaining_length": len(body), "packet": bytearray(body), "to_process": 0, "pos": 0}  # fmt: skip


class BulkClient(paho.Client):
    """A paho client whose network loop reads in bulk; PUBLISH and PUBACK go to the two callbacks given."""

    def __init__(self, *args: Any, on_publish_packet: OnPublishPacket, on_puback_packet: OnPubackPacket, **kw: Any):
        super().__init__(*args, **kw)
        self.on_publish_packet = on_publish_packet
        self.on_puback_packet = on_puback_packet
        self._unread = bytearray()  # the start of a packet whose end has not arrived yet
        self._woken = False  # a wake-up byte is on its way to the network loop
        self._v5 = self._protocol == MQTTProtocolVersion.MQTTv5

    def reconnect(self) -> MQTTErrorCode:
        self._unread = bytearray()  # a packet cut by the lost connection is not finished by the next one
        self._woken = False
        return super().reconnect()

    def _packet_queue(
        self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: paho.MQTTMessageInfo | None = None
    ) -> MQTTErrorCode:
        """Queue a packet for the network thread, waking it only if no wake-up is pending (paho writes a
        byte to its wake-up socket for every packet: a system call, and a thread switch, per publish)."""
        out: Any = {"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet), "packet": packet}
        out["info"] = info
        self._out_packet.append(out)
        if self._sockpairW is not None and not self._woken:
            self._woken = True
            with contextlib.suppress(BlockingIOError):  # full: wake-ups are pending anyway
                self._sockpairW.send(paho.sockpair_data)
        if self._thread is None and self._on_socket_register_write is None and self._in_callback_mutex.acquire(False):
            self._in_callback_mutex.release()
            return self.loop_write()
        self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_write(self) -> MQTTErrorCode:
        self._woken = False  # before writing: a packet queued from now on wakes the loop again
        return super().loop_write()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read what the socket holds and handle every complete packet in it."""
        sock = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except ssl.SSLWantWriteError:
            self._call_socket_register_write()
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        buffer = self._unread
        buffer += data
        start, rc = 0, MQTTErrorCode.MQTT_ERR_SUCCESS
        while (frame := _frame(buffer, start)) is not None:
            if frame is MALFORMED:
                rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                break
            at, end = frame
            rc = self._handle(buffer[start], bytes(buffer[at:end]))
            start = end
            if rc > 0 or self._sock is None:
                break
        del buffer[:start]
        if rc > 0:
            self._unread = bytearray()
            return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS if self._sock is not None else MQTTErrorCode.MQTT_ERR_NO_CONN

    def _handle(self, command: int, body: bytes) -> MQTTErrorCode:
        kind = command & 0xF0
        if kind == paho.PUBLISH and (rc := self._publish_packet(command, body)) is not None:
            return rc
        if kind == paho.PUBACK and len(body) >= 2:
            self._puback_packet(body)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        self._in_packet = _paho_packet(command, body)
        try:
            return self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            self._in_packet = _paho_packet()

    def _publish_packet(self, command: int, body: bytes) -> MQTTErrorCode | None:
        """Hand on a QoS 0/1 PUBLISH without properties (and acknowledge it, as paho would without manual
        acks); None leaves it to paho (QoS 2, properties, a topic that is empty or not UTF-8...)."""
        qos = (command & 0x06) >> 1
        if qos > 1 or len(body) < 2:
            return None
        topic_end = 2 + ((body[0] << 8) | body[1])
        at, mid = topic_end, 0
        if qos:
            if at + 2 > len(body):
                return None
            mid = (body[at] << 8) | body[at + 1]
            at += 2
        if self._v5:
            if at >= len(body) or body[at] != 0:
                return None  # properties (a response topic...): paho decodes them
            at += 1
        try:
            topic = body[2:topic_end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not topic:
            return None
        self.on_publish_packet(topic, body[at:], qos, bool(command & 0x01), mid)
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _puback_packet(self, body: bytes) -> None:
        """Settle a publish: out of paho's books, then to ``on_puback_packet`` (mid, reason code)."""
        mid = (body[0] << 8) | body[1]
        code = body[2] if len(body) > 2 else 0
        with self._out_message_mutex:
            message = self._out_messages.pop(mid, None)
            if message is None:
                return  # an answer to a publish already settled (a duplicate PUBACK)
            if message.qos > 0:
                self._inflight_messages -= 1
        message.info._set_as_published()
        self.on_puback_packet(mid, code)
