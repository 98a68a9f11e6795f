"""What a broker crash can have lost, and how a results subscriber asks for it again.

mosquitto persists by snapshot (``autosave_interval``, 10 s shipped). A crash loses what the broker
accepted since its last snapshot, and persistent sessions created or changed since then, with their
subscriptions and queued messages. A client notices the crash at once on a live TCP connection and at
the latest 1.5 keep-alives later. So after a reconnect everything published from ``margin`` seconds
(more than the autosave interval) before that may be gone, and publishers re-send it.

A subscriber whose session the broker lost also missed what was published between the crash and its
new SUBSCRIBE, which a publisher that reconnected first may already have re-sent. It asks the
classifiers for their recent results, and the ``forgotten`` and ``renamed`` gallery events, again
(:class:`facewire.schema.replay.ReplayRequest`). A subscriber process restarted meanwhile asks too, from
the newest result it had stored (``MqttConnection.resume_after``; the recorder, alert and forward services do).
"""

from __future__ import annotations

import logging

from facewire.logs import kv, moment
from facewire.mqtt import MqttConnection
from facewire.schema.replay import ReplayRequest
from facewire.topics import Topics

log = logging.getLogger(__name__)
UNHEARD_REMEDY = "no classifier connected yet: each re-publishes its recent results when it reconnects"
SNAPSHOT_MARGIN = 30.0  # seconds before a crash a subscriber asks for again: > mosquitto's autosave_interval (10)


def lost_since(lost_at: float, keepalive: int, margin: float) -> float:
    """The earliest time whose messages a broker crash, noticed when the connection ended at ``lost_at``,
    can have lost: ``margin`` before a crash that came at most 1.5 keep-alives before it was noticed."""
    return lost_at - margin - 1.5 * keepalive


def ask_for_replay_when_messages_missed(
    connection: MqttConnection, topics: Topics, client: str, margin: float = SNAPSHOT_MARGIN
) -> None:
    """Make ``connection`` ask for the recent results again whenever a reconnect may have missed some: its
    session is gone, or it subscribes in a ``$share`` group (mosquitto 2 restores a shared subscription after
    a restart only when the client subscribes again; the recorder, alerts and forward services do). The first
    connect of a new process counts as such a reconnect when ``connection.resume_after`` is set.

    Call after subscribing to the results: the request goes out after the re-SUBSCRIBE, so the replay finds
    the subscription. If no classifier is connected yet (unheard), each one re-publishes on its own
    reconnect, which comes after this subscription."""

    def ask(lost_at: float) -> None:
        since = lost_since(lost_at, connection.settings.keepalive, margin)
        log.warning(kv("replay-requested", client=client, since=moment(since)))
        connection.publish(
            topics.results_replay(),
            ReplayRequest(client, since).to_json(),
            on_unheard=lambda: log.info(kv("replay-unheard", client=client, remedy=UNHEARD_REMEDY)),
        )

    connection.on_messages_missed = ask
