"""``facewire monitor``, ``facewire tail`` and ``facewire homeassistant``."""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.config import Settings
from facewire.mqtt import Message, MqttConnection, Will
from facewire.topics import Topics
from facewire_console.monitor.adapter import MonitorClient
from facewire_console.monitor.homeassistant import HomeAssistantBridge, gallery_people
from facewire_console.monitor.keys import KeyReader
from facewire_console.monitor.render import render_screen
from facewire_console.monitor.state import Filters, MonitorState
from facewire_console.monitor.tail import describe_embedding, format_line


def _state(settings: Settings, node: str, person: str, alert_window: float = 3600.0) -> MonitorState:
    return MonitorState(
        topics=Topics(settings.mqtt.topic_prefix),
        configured_threshold=settings.classifier_threshold(),
        stale_after=3 * settings.edge.heartbeat_seconds,
        alert_window=alert_window,
        filters=Filters(node, person),
    )


def _attach_homeassistant(client: MonitorClient, settings: Settings, gallery: Path | None) -> None:
    """Publish Home Assistant discovery and sensor states from the monitor's own connection."""
    conf = settings.homeassistant
    bridge = HomeAssistantBridge(client.state.topics, conf.discovery_prefix, conf.instance)
    offline = bridge.status("offline")
    client.connection.set_will(Will(offline.topic, offline.payload))
    client.final = Will(offline.topic, offline.payload)
    people = gallery_people(gallery or settings.classifier.gallery)

    def publish_start(connected: bool) -> None:
        client.state.connected = connected
        if connected:
            for item in bridge.start(people):
                client.connection.publish(item.topic, item.payload, retain=item.retain)

    def relay(topic: str, payload: bytes) -> None:
        for item in bridge.ingest(topic, payload):
            client.connection.publish(item.topic, item.payload, retain=item.retain)

    client.connection.on_connection_change = publish_start
    client.listeners.append(relay)
    # forgotten and renamed people: their retained sensors are cleared
    client.connection.subscribe(client.state.topics.gallery_events(), lambda m: relay(m.topic, bytes(m.payload)))


@click.command("monitor")
@common_options
@click.option("--node", default="", help="Show only this node.")
@click.option("--person", default="", help="Show only this person.")
@click.option("--once", is_flag=True, help="Collect for --duration seconds, print one snapshot, exit.")
@click.option("--json", "as_json", is_flag=True, help="Like --once, but print the snapshot as JSON.")
@click.option("--duration", type=click.FloatRange(min=0), default=2.0, show_default=True)
@click.option("--refresh", type=click.FloatRange(1, 30), default=4.0, show_default=True, help="Redraws per second.")
@click.option(
    "--alert-window",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Seconds an alert stays open.",
)
@click.option("--ha", is_flag=True, help="Also publish Home Assistant MQTT discovery (homeassistant.enabled).")
@click.option("--gallery", type=click.Path(path_type=Path, file_okay=False), default=None, help="People for --ha.")
@fail_cleanly
def monitor(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    node: str,
    person: str,
    once: bool,
    as_json: bool,
    duration: float,
    refresh: float,
    alert_window: float,
    ha: bool,
    gallery: Path | None,
) -> None:
    """Live full-screen view of results, nodes, alerts, thresholds, latency and dead letters."""
    settings = settings_from(config_file, broker_url, verbose)
    client = MonitorClient(settings.mqtt, _state(settings, node, person, alert_window))
    if ha or settings.homeassistant.enabled:
        _attach_homeassistant(client, settings, gallery)
    client.start()
    try:
        if once or as_json:
            _print_once(client, duration, as_json)
        else:
            _run_live(client, refresh)
    finally:
        client.close()


def _print_once(client: MonitorClient, duration: float, as_json: bool) -> None:
    if client.wait_connected(10.0):
        click.echo(f"connected to {client.state.broker}; collecting for {duration:g}s", err=True)
    else:
        click.echo(f"not connected to {client.state.broker}; collecting anyway", err=True)
    threading.Event().wait(duration)
    snapshot = client.state.snapshot()
    if as_json:
        click.echo(json.dumps(snapshot, indent=2))
    else:
        console = Console()
        console.print(render_screen(snapshot, console.height), height=console.height)
    if not snapshot["connected"]:
        raise SystemExit(1)


def _run_live(client: MonitorClient, refresh: float) -> None:
    stop = stop_event_on_signals()
    state = client.state
    console = Console()

    def on_key(key: str) -> None:
        if key in "qQ":
            stop.set()
        elif key == "n":
            state.cycle_filter("node")
        elif key == "p":
            state.cycle_filter("person")
        elif key == "a":
            state.filters.node = state.filters.person = ""

    with KeyReader(on_key), Live(console=console, screen=True, auto_refresh=False) as live:
        while not stop.is_set():
            live.update(render_screen(state.snapshot(), console.height), refresh=True)
            stop.wait(1.0 / refresh)


@click.command("tail")
@common_options
@click.option("--node", default="", help="Only this node's embeddings.")
@click.option("--vector", is_flag=True, help="Also print the embedding vector.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--count", type=click.IntRange(min=0), default=0, help="Exit after this many messages (0: never).")
@fail_cleanly
def tail(
    config_file: Path | None, broker_url: str | None, verbose: int, node: str, vector: bool, as_json: bool, count: int
) -> None:
    """Decode the msgpack embedding stream (facewire/embeddings/+) one line per message."""
    settings = settings_from(config_file, broker_url, verbose)
    topics = Topics(settings.mqtt.topic_prefix)
    inbox: queue.Queue[Message] = queue.Queue()
    connection = MqttConnection(settings.mqtt, f"facewire-tail-{socket.gethostname()}-{os.getpid()}")
    connection.subscribe(topics.embeddings(node) if node else topics.embeddings_all(), inbox.put, qos=0)
    connection.connect()
    click.echo(f"tailing {topics.embeddings(node or '+')} on {settings.mqtt.url}", err=True)
    stop = stop_event_on_signals()
    seen = 0
    try:
        while not stop.is_set() and (count == 0 or seen < count):
            try:
                message = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            info = describe_embedding(message.topic, message.payload, vector)
            click.echo(json.dumps(info) if as_json else format_line(info))
            seen += 1
    finally:
        connection.close()


@click.command("homeassistant")
@common_options
@click.option("--gallery", type=click.Path(path_type=Path, file_okay=False), default=None, help="Enrolled people.")
@fail_cleanly
def homeassistant(config_file: Path | None, broker_url: str | None, verbose: int, gallery: Path | None) -> None:
    """Publish Home Assistant MQTT discovery and sensor states until Ctrl-C."""
    settings = settings_from(config_file, broker_url, verbose)
    client = MonitorClient(settings.mqtt, _state(settings, "", ""))
    _attach_homeassistant(client, settings, gallery)
    client.start()
    click.echo(f"home assistant discovery under {settings.homeassistant.discovery_prefix}/ on {settings.mqtt.url}")
    stop_event_on_signals().wait()
    client.close()


COMMANDS = [monitor, tail, homeassistant]
