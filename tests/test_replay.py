"""A broker that crashes before its next snapshot forgets sessions: nothing is lost for the subscribers.

mosquitto snapshots every ``autosave_interval``; these brokers run the shipped configuration with the
interval raised to an hour, so every kill -9 below lands before any snapshot, as a crash of a broker
that had just started (or just been joined by a subscriber) does. Found by CI: a kill -9 3.5 s after
the broker started lost 53 rows of the detection log, because the classifier's re-publish after its
reconnect ran before the recorder's new SUBSCRIBE.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from alert_service.alerts import AlertEngine, AlertService
from alert_service.forward import HttpSender, ResultForwarder
from alert_service.forward_queue import ForwardQueue
from alert_service.recorder import Recorder
from alert_service.rules import RuleBook
from alert_service.sqlite_log import SqliteResultLog
from alert_service.store_factory import open_alert_store
from alert_service.subscriber import ResultSubscriber
from classifier_service.gallery.client import GalleryClient
from edge_agent.forwarder import Forwarder
from edge_agent.spool import Spool
from facewire.config import AlertSettings, ForwardSettings, MqttSettings, RecorderSettings
from facewire.errors import SchemaError
from facewire.mqtt import Message, MqttConnection
from facewire.replay import ask_for_replay_when_messages_missed, lost_since
from facewire.schema import DeadLetter, FaceResult
from facewire.schema.gallery import GalleryEvent
from facewire.schema.replay import ReplayRequest
from facewire.topics import Topics
from facewire_console.broker import BROKER_CONF, LocalBroker
from harness.faults import SpooledPublisher
from harness.processes import Collector, RunningClassifier
from tests.reliability_support import DurableCollector, ResultCounter, synthetic_stream
from tests.test_spine_integration import split_sample

T = Topics()
KEYS = 200


def no_snapshot_broker(workdir: Path) -> LocalBroker:
    """The shipped broker configuration, but no periodic snapshot within the test."""
    config = workdir / "no-snapshot.conf"
    shipped = BROKER_CONF.read_text()
    assert re.search(r"(?m)^autosave_interval 10$", shipped), "the shipped config snapshots every 10 s"
    config.write_text(re.sub(r"(?m)^autosave_interval .*$", "autosave_interval 3600", shipped))
    return LocalBroker(workdir / "broker", config=config).start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = no_snapshot_broker(tmp_path)
    yield broker
    broker.stop()


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


# --- the request ----------------------------------------------------------------------------------------------------


def test_replay_request_round_trips_and_refuses_what_it_does_not_define() -> None:
    request = ReplayRequest("recorder-rec", 1_700_000_000.5)
    assert ReplayRequest.from_json(request.to_json()) == request
    for payload, reason in (
        (b'{"v":1,"client":"r","since":-1}', "out-of-range"),
        (b'{"v":1,"client":"r","since":"yesterday"}', "wrong-type"),
        (b'{"v":1,"client":"r","since":1,"all":true}', "unknown-field"),
        (b'{"client":"r","since":1}', "missing-version"),
        (b'{"v":1,"client":"\\u001b[2J","since":1}', "control-char"),
        (b'{"v":1,"client":"' + b"r" * 200 + b'","since":1}', "wrong-type"),
        (b"[1]", "wrong-type"),
    ):
        with pytest.raises(SchemaError) as refused:
            ReplayRequest.from_json(payload)
        assert refused.value.reason == reason, payload


def test_lost_since_reaches_back_past_the_snapshot_and_the_detection_delay() -> None:
    assert lost_since(1000.0, keepalive=30, margin=30.0) == 1000.0 - 30.0 - 45.0


# --- the connection notices a lost session ------------------------------------------------------------------------


def test_a_reconnect_tells_a_lost_session_from_a_kept_one(broker: LocalBroker) -> None:
    """A kept session with a plain subscription missed nothing; one with a shared subscription did, after a
    broker restart (mosquitto 2 restores it only when the client subscribes again: CI lost 2,089 rows of the
    detection log that way, the recorder subscribing in ``$share/recorders``)."""
    lost: list[float] = []
    shared_gaps: list[float] = []
    connection = MqttConnection(MqttSettings(url=broker.url), "session-watcher", session_expiry=3600)
    connection.on_messages_missed = lost.append
    connection.subscribe("facewire/results/+", lambda _m: None)
    connection.connect()
    shared = MqttConnection(MqttSettings(url=broker.url), "shared-watcher", session_expiry=3600)
    shared.on_messages_missed = shared_gaps.append
    shared.subscribe("$share/recorders/facewire/results/+", lambda _m: None)
    shared.connect()
    try:
        assert connection.lost_at is None and not lost, "a first connection has no session to lose"
        before = time.time()
        broker.kill()
        broker.start()
        assert wait_until(lambda: lost, 15), "the reconnect after a crash before any snapshot finds no session"
        assert before <= lost[0] <= time.time() and lost[0] == connection.lost_at
        broker.stop()  # SIGTERM: mosquitto writes its snapshot, the session survives
        broker.start()
        assert wait_until(lambda: connection.connected and (connection.lost_at or 0) > lost[0], 15)
        time.sleep(0.5)
        assert len(lost) == 1, "a session restored from the snapshot is not reported lost"
        assert wait_until(lambda: len(shared_gaps) == 2, 15), "a shared subscription reports both restarts"
    finally:
        connection.close()
        shared.close()


# --- the classifier replays for a subscriber that came back late --------------------------------------------------


@pytest.mark.slow
def test_a_subscriber_that_resubscribes_after_the_classifier_gets_every_result(
    tmp_path: Path, sample_dir: Path, broker: LocalBroker
) -> None:
    """The classifier reconnects and re-publishes within ~1 s; two persistent subscribers come back 6 and
    12 s after the crash, with their sessions gone. Results made meanwhile (and the ones the crash lost)
    reach neither by themselves; the second one asks for a replay and both then have every result."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    keys = {("cam-1", seq) for seq in range(2 * KEYS)}
    live = Collector(broker.url, [T.results_all()]).start()  # clean session: back within ~1 s
    quiet = ResultCounter(broker.url, "late-without-replay", ask_replay=False).start()
    asking = ResultCounter(broker.url, "late-with-replay").start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1", extra=["-v"]).start()
    publisher = SpooledPublisher(broker.url, tmp_path / "spool.sqlite", "edge-replay")
    payloads = synthetic_stream("cam-1", 2 * KEYS)
    try:
        for payload in payloads[:KEYS]:
            publisher.put(T.embeddings("cam-1"), payload)
        first = {("cam-1", seq) for seq in range(KEYS)}
        assert wait_until(lambda: first <= set(asking.counts) and first <= set(quiet.counts), 60)
        quiet.reconnect_after(6)
        asking.reconnect_after(12)
        broker.kill()
        broker.start()
        for payload in payloads[KEYS:]:
            publisher.put(T.embeddings("cam-1"), payload)
        answered = {FaceResult.from_json(p).key for _t, p in live.messages}
        assert wait_until(lambda: keys <= {FaceResult.from_json(p).key for _t, p in live.messages}, 60), answered
        assert wait_until(lambda: quiet.connected, 20)
        time.sleep(1.0)
        gone = quiet.missing(keys)
        assert len(gone) >= KEYS, "without a replay, a subscriber back after the classifier misses its results"
        assert wait_until(lambda: not asking.missing(keys), 40), f"{len(asking.missing(keys))} never replayed"
        assert wait_until(lambda: not quiet.missing(keys), 10), "the replay reaches every subscriber"
        assert "replay-request" in classifier.log.read_text()
    finally:
        publisher.close()
        assert classifier.stop() == 0
        for subscriber in (asking, quiet):
            subscriber.stop()
        live.stop()


@pytest.mark.slow
def test_the_classifier_re_publishes_what_the_crash_lost_after_an_outage_longer_than_its_window(
    tmp_path: Path, sample_dir: Path, broker: LocalBroker
) -> None:
    """A subscriber whose session survives (it is in the snapshot of a clean restart) is away while 100 results
    are queued for it; the broker dies with them and stays down 12 s, longer than ``classifier.resend_seconds``
    (2 here, keep-alive 5). The embeddings came from a plain publisher (no edge spool to re-send them), so only
    the classifier's own re-publish can restore them: it reaches back from when its connection was lost, not
    from its reconnect, which the outage had already put past them."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    env = {"FACEWIRE_CLASSIFIER__RESEND_SECONDS": "2", "FACEWIRE_MQTT__KEEPALIVE": "5"}
    away = ResultCounter(broker.url, "away-with-session", ask_replay=False).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1", env=env).start()
    live = Collector(broker.url, [T.results_all()]).start()
    edge = MqttConnection(MqttSettings(url=broker.url), "plain-edge")
    back: ResultCounter | None = None
    payloads = synthetic_stream("cam-1", 101)
    try:
        broker.stop()  # SIGTERM: the snapshot now holds both persistent sessions
        broker.start()
        edge.connect()
        for _ in range(30):  # until the classifier is back (its shared subscription returns with it)
            edge.publish(T.embeddings("cam-1"), payloads[0])
            if wait_until(lambda: ("cam-1", 0) in away.counts, 1.0):
                break
        assert ("cam-1", 0) in away.counts, "everyone is back after the clean restart"
        away.stop()
        for payload in payloads[1:]:
            edge.publish(T.embeddings("cam-1"), payload)
        queued = {("cam-1", seq) for seq in range(1, 101)}
        assert wait_until(lambda: queued <= {FaceResult.from_json(p).key for _t, p in live.messages}, 30)
        broker.kill()
        time.sleep(12.0)  # longer than resend_seconds plus 1.5 keep-alives: 9.5 s
        broker.start()
        back = ResultCounter(broker.url, "away-with-session", ask_replay=False).start()
        assert wait_until(lambda: not back.missing(queued), 30), f"{len(back.missing(queued))} of 100 never came"
    finally:
        edge.close()
        live.stop()
        assert classifier.stop() == 0
        if back is not None:
            back.stop()


@pytest.mark.slow
def test_replay_requests_are_coalesced_and_a_malformed_one_is_dead_lettered(
    tmp_path: Path, sample_dir: Path, broker: LocalBroker
) -> None:
    gallery, _probes = split_sample(sample_dir, tmp_path)
    results = ResultCounter(broker.url, "flood-watch").start()
    letters = Collector(broker.url, [T.deadletter("classifier")]).start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1").start()
    publisher = SpooledPublisher(broker.url, tmp_path / "spool.sqlite", "edge-flood")
    asker = MqttConnection(MqttSettings(url=broker.url), "flooder")
    asker.connect()
    try:
        keys = {("cam-1", seq) for seq in range(KEYS)}
        for payload in synthetic_stream("cam-1", KEYS):
            publisher.put(T.embeddings("cam-1"), payload)
        assert wait_until(lambda: keys <= set(results.counts), 60)
        started = time.monotonic()
        for _ in range(100):
            asker.publish(T.results_replay(), ReplayRequest("flooder", 0.0).to_json())
        asker.publish(T.results_replay(), b'{"v":1,"client":"flooder","since":1e400}')
        assert wait_until(lambda: letters.messages, 15)
        time.sleep(5.0)
        elapsed = time.monotonic() - started
        replays = max(results.counts[key] for key in keys) - 1
        assert 1 <= replays <= elapsed / 2.0 + 1, f"{replays} replays for 100 requests in {elapsed:.1f}s"
        letter = DeadLetter.from_json(letters.messages[0][1])
        assert (letter.reason, letter.topic) == ("not-finite", T.results_replay())
        after = {("cam-1", seq) for seq in range(KEYS, KEYS + 10)}
        for payload in synthetic_stream("cam-1", KEYS + 10)[KEYS:]:
            publisher.put(T.embeddings("cam-1"), payload)
        assert wait_until(lambda: after <= set(results.counts), 30), "the classifier still answers"
    finally:
        asker.close()
        publisher.close()
        assert classifier.stop() == 0
        results.stop()
        letters.stop()


class ErasureWatcher:
    """A persistent-session subscriber of gallery events noting the people forgotten, as the recorder does."""

    def __init__(self, url: str, client: str, ask_replay: bool) -> None:
        self.forgotten: list[str] = []
        self.connection = MqttConnection(MqttSettings(url=url), client, session_expiry=3600)
        self.connection.subscribe(T.gallery_events(), self._record)
        if ask_replay:
            ask_for_replay_when_messages_missed(self.connection, T, client)
        self.connection.connect()

    def _record(self, message: Message) -> None:
        event = GalleryEvent.from_json(message.payload)
        if event.event == "forgotten":
            self.forgotten.append(str(event.get("person")))


@pytest.mark.slow
def test_a_forget_made_while_a_subscriber_was_away_reaches_it_after_a_crash(
    tmp_path: Path, sample_dir: Path, broker: LocalBroker
) -> None:
    """The recorder erases a forgotten person from the detection log when the ``forgotten`` event comes. A crash
    before any snapshot took the sessions; the forget is made before two subscribers come back (6 and 10 s):
    the later one asks for a replay, and the classifier publishes the event again to both."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    person = sorted(p.name for p in gallery.iterdir())[0]
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1").start()
    quiet = ErasureWatcher(broker.url, "erasure-without-replay", ask_replay=False)
    asking = ErasureWatcher(broker.url, "erasure-with-replay", ask_replay=True)
    try:
        quiet.connection.client.reconnect_delay_set(6, 30)
        asking.connection.client.reconnect_delay_set(10, 30)
        broker.kill()
        broker.start()
        with GalleryClient(MqttSettings(url=broker.url)) as client:
            assert client.request({"op": "forget", "person": person}, timeout=30)[0]["event"] == "forgotten"
        assert wait_until(lambda: quiet.connection.connected, 15)
        time.sleep(1.0)
        assert not quiet.forgotten, "back after the forget, with its session gone: the event is not queued for it"
        assert wait_until(lambda: asking.forgotten == [person], 20), asking.forgotten
        assert wait_until(lambda: quiet.forgotten == [person], 10), "the replay reaches every subscriber"
    finally:
        assert classifier.stop() == 0
        quiet.connection.close()
        asking.connection.close()


# --- the edge keeps what a crashed broker lost, however long the outage ------------------------------------------


def test_the_edge_re_sends_what_the_broker_lost_after_an_outage_longer_than_its_resend_window(
    tmp_path: Path, broker: LocalBroker
) -> None:
    """A subscriber offline at the crash had 50 embeddings queued in its session; the broker dies with them
    (no snapshot) and stays down longer than ``resend_seconds``. The edge kept them and sends them again,
    also when its first re-send finds nobody subscribed (0x10: the subscriber comes back 3 s later).
    Found by CI: those re-sent entries had been acknowledged before the crash, and the retry after the
    back-off sent only unacknowledged ones (977 embeddings never classified)."""
    settings = MqttSettings(url=broker.url, keepalive=5)
    topic = T.embeddings("cam-1")
    away = DurableCollector(broker.url, topic).start()
    away.stop()  # offline, its session (and what is queued in it) kept by the broker
    connection = MqttConnection(settings, "edge-outage")
    spool = Spool(tmp_path / "spool.sqlite", max_messages=10_000, keep_acked=1.0)
    forwarder = Forwarder(spool, connection, resend_seconds=1.0)
    connection.on_connection_change = forwarder.connection_changed
    connection.connect()
    forwarder.start()
    back: DurableCollector | None = None
    try:
        payloads = synthetic_stream("cam-1", 250)
        for payload in payloads[:50]:
            forwarder.put(topic, payload)
        assert wait_until(lambda: spool.depth == 0, 20), "the broker took the first 50"
        broker.kill()
        # The edge notices the crash at once on loopback (else within 1.5 keep-alives). Entries acked earlier than
        # resend_seconds before it are pruned as usual: the broker snapshotted them, as resend_seconds > autosave.
        assert wait_until(lambda: spool.hold_acked_from is not None, 10), "the disconnect holds the re-send window"
        for payload in payloads[50:]:  # 200 puts while the broker is down: the spool prunes as it grows
            forwarder.put(topic, payload)
        time.sleep(4.0)  # longer than resend_seconds: the old re-send window no longer reached the first 50
        broker.start()
        assert wait_until(lambda: forwarder.unheard > 0, 15), "the re-send found no subscriber"
        time.sleep(2.0)
        back = DurableCollector(broker.url, topic).start()
        seqs = back.wait_for_seqs(250, 40)
        assert set(seqs) == set(range(250)), f"missing {sorted(set(range(250)) - set(seqs))[:10]}..."
        assert wait_until(lambda: spool.hold_acked_from is None, 15), "the hold ends once the re-send is heard"
    finally:
        forwarder.close()
        connection.close()
        spool.close()
        if back is not None:
            back.stop()


# --- a restarted recorder or alert service asks from what it stored last ---------------------------------------------


@dataclass
class DurableSubscriber:
    """An in-process recorder, alert service or forwarder with the CLI's persistent session, and what it kept."""

    service: ResultSubscriber
    stored: Callable[[], int]
    close_store: Callable[[], None]

    def stop(self) -> None:
        self.service.stop()
        self.close_store()


def start_durable(kind: str, url: str, database: Path) -> DurableSubscriber:
    """A ``kind`` ("recorder", "alerts" or "forward") subscriber, client ``<kind>-r1``, storing in ``database``."""
    connection = MqttConnection(
        MqttSettings(url=url), f"{kind}-r1", session_expiry=3600, manual_ack=True, receive_maximum=1000
    )
    service: ResultSubscriber
    if kind == "recorder":
        log = SqliteResultLog(database)
        settings = RecorderSettings(database=database, batch_wait_ms=50, retention_interval=3600)
        service, stored, close_store = Recorder(log, connection, T, settings, "r1"), log.count, log.close
    elif kind == "forward":  # an endpoint that is never there: everything stays in the outbox
        conf = ForwardSettings(url="http://127.0.0.1:9/facewire", queue=database, backoff_max=1.0)
        outbox = ForwardQueue(database)
        service = ResultForwarder(outbox, HttpSender(outbox, conf), connection, T, conf, "r1")
        close_store = outbox.close

        def stored() -> int:
            return outbox.depth

    else:
        store = open_alert_store(database)
        conf = AlertSettings(database=database)
        service = AlertService(AlertEngine(RuleBook(conf), store), connection, T, conf, "r1")
        close_store = store.close

        def stored() -> int:  # every unknown result is a sighting of the unknown-face rule
            with closing(sqlite3.connect(database)) as db:
                return int(db.execute("SELECT count(*) FROM sightings").fetchone()[0])

    connection.set_will(service.will())
    connection.connect()
    service.start()
    return DurableSubscriber(service, stored, close_store)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["recorder", "alerts", "forward"])
def test_a_subscriber_restarted_after_the_broker_lost_its_session_asks_from_what_it_stored_last(
    kind: str, tmp_path: Path, sample_dir: Path, broker: LocalBroker
) -> None:
    """A results subscriber is down (an upgrade, say) when the broker crashes before snapshotting its session;
    the results made before it is back reach only the subscribers that were there. Its new process has lost no
    connection, but it knows what it stored last (the recorder's newest row, the alert rules' newest sighting,
    the forwarder's newest result handled): it asks for a replay from there, and ends up with every result."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    database = tmp_path / f"{kind}.sqlite"
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="c1").start()
    live = Collector(broker.url, [T.results_all()]).start()
    edge = MqttConnection(MqttSettings(url=broker.url), "plain-edge")
    payloads = synthetic_stream("cam-1", 2 * KEYS)  # strangers to this gallery
    subscriber = start_durable(kind, broker.url, database)
    assert subscriber.service.connection.resume_after is None, "an empty store has nothing to resume from"
    try:
        edge.connect()
        for payload in payloads[:KEYS]:
            edge.publish(T.embeddings("cam-1"), payload)
        assert wait_until(lambda: subscriber.stored() == KEYS, 60)
        subscriber.stop()
        broker.kill()
        broker.start()

        def answered() -> set[tuple[str, int]]:
            return {FaceResult.from_json(p).key for _t, p in live.messages}

        for _ in range(30):  # until the classifier is back (a publish before that reaches no one)
            edge.publish(T.embeddings("cam-1"), payloads[KEYS])
            if wait_until(lambda: ("cam-1", KEYS) in answered(), 1.0):
                break
        for payload in payloads[KEYS + 1 :]:
            edge.publish(T.embeddings("cam-1"), payload)
        keys = {("cam-1", seq) for seq in range(2 * KEYS)}
        assert wait_until(lambda: keys <= answered(), 60), "the classifier answered the second half"
        subscriber = start_durable(kind, broker.url, database)
        assert subscriber.service.connection.resume_after is not None
        assert wait_until(lambda: subscriber.stored() == 2 * KEYS, 30), f"{subscriber.stored()} kept"
    finally:
        edge.close()
        live.stop()
        subscriber.stop()
        assert classifier.stop() == 0
