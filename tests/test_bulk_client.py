"""The bulk socket reader under MqttConnection (facewire.bulk_client, issue 21): every packet is found
whatever way the bytes are cut, messages of every size arrive whole and in order from a stock paho
publisher, messages with MQTT 5 properties still carry them, and PUBACK reason codes still settle each
publish. The last two hold for paho's own reader too (``mqtt.bulk_reads = false``). The broker is a real
mosquitto."""

from __future__ import annotations

import socket
import statistics
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from facewire.bulk_client import MALFORMED, BulkClient, _frame
from facewire.config import MqttSettings
from facewire.mqtt import Message, MqttConnection, Refusal, reason_name
from facewire_console.broker import LocalBroker
from tests.broker_support import SecureBroker, start_secure_broker

# Sizes around each boundary of MQTT's variable-length remaining length (1, 2, 3 bytes), and close to the
# shipped broker's max_packet_size (256 KiB): consecutive large ones never fit one read of the socket.
SIZES = [0, 1, 100, 120, 121, 122, 16_370, 16_378, 16_379, 16_380, 70_000, 200_000, 260_000]


def _packet(command: int, body: bytes) -> bytes:
    """An MQTT packet: the command byte, the remaining length, the body."""
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([command]) + bytes(encoded) + body


def test_every_packet_is_found_whatever_way_the_bytes_are_cut() -> None:
    packets = [_packet(0x32, b"\x00\x01t\x00\x07\x00" + bytes([i % 251]) * size) for i, size in enumerate(SIZES)]
    packets.insert(3, _packet(0x40, b"\x00\x09"))  # a PUBACK without reason code
    packets.insert(5, _packet(0x40, b"\x00\x0a\x87\x00"))  # a refusal
    stream = b"".join(packets)
    ends = [sum(map(len, packets[: i + 1])) for i in range(len(packets))]
    for cut in [*range(0, 40), *range(16_380, 16_420), *(end + d for end in ends for d in (-2, -1, 0, 1))]:
        buffer, found, start = bytearray(stream[:cut]), [], 0
        while (frame := _frame(buffer, start)) is not None:
            assert frame is not MALFORMED
            found.append(bytes(buffer[start : frame[1]]))
            start = frame[1]
        assert found == packets[: len(found)], f"cut at {cut}"
        assert len(found) == sum(1 for end in ends if end <= cut), f"cut at {cut}: a whole packet was missed"


def test_a_remaining_length_longer_than_four_bytes_is_malformed() -> None:
    assert _frame(bytearray(b"\x30\xff\xff\xff\xff\x01"), 0) is MALFORMED
    assert _frame(bytearray(b"\x30\xff\xff\xff"), 0) is None  # not all there yet


class Inbox:
    def __init__(self, expected: int) -> None:
        self.messages: list[Message] = []
        self.done = threading.Event()
        self.expected = expected

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        if len(self.messages) >= self.expected:
            self.done.set()


@pytest.mark.parametrize("bulk_reads", [True, False], ids=["bulk", "paho-reader"])
def test_messages_of_every_size_arrive_whole_and_in_order(broker: LocalBroker, bulk_reads: bool) -> None:
    payloads = [bytes([i % 256]) * SIZES[i % len(SIZES)] + i.to_bytes(4, "big") for i in range(3 * len(SIZES))]
    payloads += [i.to_bytes(4, "big") * 40 for i in range(3_000)]  # many small ones: many per read
    inbox = Inbox(len(payloads))
    receiver = MqttConnection(MqttSettings(url=broker.url, bulk_reads=bulk_reads), "bulk-receiver")
    receiver.subscribe("bulk/#", inbox)
    receiver.connect()
    sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="stock-sender", protocol=paho.MQTTv5)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    try:
        infos = [sender.publish(f"bulk/{i % 3}", payload, qos=i % 2) for i, payload in enumerate(payloads)]
        for info in infos:
            info.wait_for_publish(30)
        assert inbox.done.wait(60), f"{len(inbox.messages)} of {len(payloads)} arrived"
    finally:
        sender.loop_stop()
        sender.disconnect()
        receiver.close()
    sent = [(f"bulk/{i % 3}", i % 2, payload) for i, payload in enumerate(payloads)]
    got = [(m.topic, m.qos, m.payload) for m in inbox.messages]
    assert sorted(got) == sorted(sent), "every message arrives once, whole"
    for stream in {(topic, qos) for topic, qos, _ in sent}:  # MQTT orders messages per topic and QoS
        assert [m for m in got if m[:2] == stream] == [m for m in sent if m[:2] == stream], f"order of {stream}"


def test_a_message_with_properties_still_carries_them(broker: LocalBroker) -> None:
    inbox = Inbox(2)
    receiver = MqttConnection(MqttSettings(url=broker.url), "bulk-receiver")
    receiver.subscribe("ask/#", inbox)
    receiver.connect()
    sender = MqttConnection(MqttSettings(url=broker.url), "bulk-sender")
    sender.connect()
    try:
        sender.publish("ask/1", b"plain").wait_for_publish(10)
        sender.publish("ask/2", b"question", response_topic="reply/here", correlation_data=b"\x01\x02")
        assert inbox.done.wait(10)
    finally:
        sender.close()
        receiver.close()
    plain, asked = inbox.messages
    assert (plain.payload, plain.response_topic, plain.correlation_data) == (b"plain", None, None)
    assert (asked.payload, asked.response_topic, asked.correlation_data) == (b"question", "reply/here", b"\x01\x02")


def test_retained_messages_are_marked_retained(broker: LocalBroker) -> None:
    sender = MqttConnection(MqttSettings(url=broker.url), "bulk-sender")
    sender.connect()
    sender.publish("kept/one", b"kept", retain=True).wait_for_publish(10)
    sender.close()
    inbox = Inbox(1)
    receiver = MqttConnection(MqttSettings(url=broker.url), "bulk-receiver")
    receiver.subscribe("kept/#", inbox)
    receiver.connect()
    try:
        assert inbox.done.wait(10)
    finally:
        receiver.close()
    assert (inbox.messages[0].payload, inbox.messages[0].retain) == (b"kept", True)


@pytest.fixture
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> SecureBroker:
    return start_secure_broker(tmp_path_factory.mktemp("bulk"), ["facewire"])


@pytest.mark.parametrize("bulk_reads", [True, False], ids=["bulk", "paho-reader"])
def test_puback_reason_codes_still_settle_each_publish_over_tls(secure_broker: SecureBroker, bulk_reads: bool) -> None:
    """Over the shipped TLS listener and ACL: taken, refused (0x87: the service account may not publish as
    a node) and unheard (0x10: nobody subscribes) publishes, interleaved, each settled as what it was."""
    outcomes: dict[int, str] = {}
    lock = threading.Lock()

    def note(i: int, what: str) -> None:
        with lock:
            outcomes[i] = what

    settings = secure_broker.settings("facewire").model_copy(update={"bulk_reads": bulk_reads})
    connection = MqttConnection(settings, "bulk-tls")
    connection.subscribe("facewire/alerts/heard", lambda message: None)
    connection.connect()
    try:
        for i in range(300):
            topic = ("facewire/alerts/heard", "facewire/embeddings/facewire", "facewire/alerts/nobody")[i % 3]

            def refused(refusal: Refusal, i: int = i) -> None:
                note(i, f"refused {refusal.code:#x} {refusal.reason}")

            connection.publish(
                topic,
                b"x" * (i * 50),
                on_acked=lambda i=i: note(i, "taken"),
                on_refused=refused,
                on_unheard=lambda i=i: note(i, "unheard"),
            )
        deadline = time.monotonic() + 20
        while len(outcomes) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        connection.close()
        secure_broker.stop()
    expected = ("taken", "refused 0x87 Not authorized", "unheard")
    assert outcomes == {i: expected[i % 3] for i in range(300)}


def test_reason_codes_are_named() -> None:
    assert reason_name(0x87) == "Not authorized"
    assert reason_name(0x10) == "No matching subscribers"
    assert reason_name(0x42) == "reason code 0x42"
    assert str(paho.ReasonCode(PacketTypes.PUBACK, identifier=0x97)) == reason_name(0x97)


def test_a_packet_cut_by_a_lost_connection_is_not_finished_by_the_next(broker: LocalBroker) -> None:
    """The start of a packet whose end never came (the connection dropped) is forgotten on reconnect: the
    new connection's CONNACK and messages are read from their own first byte."""
    inbox = Inbox(1)
    connection = MqttConnection(MqttSettings(url=broker.url), "bulk-cut")
    connection.subscribe("cut/#", inbox)
    connection.connect()
    drops: list[bool] = []
    connection.on_connection_change = drops.append
    try:
        client = connection.client
        assert isinstance(client, BulkClient) and client._sock is not None
        client._unread += b"\x32\x80\x10\x00\x05cut/x"  # a PUBLISH of 2,048 bytes, cut after 9
        client._sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 15
        while drops[-1:] != [True] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert drops[:1] == [False] and drops[-1:] == [True], f"dropped and connected again: {drops}"
        connection.publish("cut/after", b"whole").wait_for_publish(10)
        assert inbox.done.wait(10), "a message after the reconnect arrives"
    finally:
        connection.close()
    assert [m.payload for m in inbox.messages] == [b"whole"]


def test_publishes_from_many_threads_each_wake_the_idle_network_loop(broker: LocalBroker) -> None:
    """A wake-up byte is written only when none is pending: a publish made while the network loop sleeps
    with nothing else to do must still go out at once. A stranded one waits for paho's select() to time
    out (1 s): the median round trip tells the two apart on any machine (about 1 ms against 0.5 s)."""
    connection = MqttConnection(MqttSettings(url=broker.url, keepalive=60), "bulk-wake")
    connection.connect()
    waits: list[float] = []

    def publisher(first: int) -> None:
        for i in range(first, first + 25):
            start = time.monotonic()
            assert connection.publish("wake/nobody", b"%d" % i).wait_for_publish(10)
            waits.append(time.monotonic() - start)
            time.sleep(0.002 * (i % 3))  # the loop goes back to sleep between some of them

    threads = [threading.Thread(target=publisher, args=(n * 25,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        connection.close()
    assert len(waits) == 100
    assert statistics.median(waits) < 0.3, "publishes waited for the network loop's select() to time out"
