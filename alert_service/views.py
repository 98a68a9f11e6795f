"""``facewire alerts``, ``facewire stats`` and ``facewire nodes``: the operator's views of the subscribers."""

from __future__ import annotations

import getpass
import json
import os
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from alert_service.nodes import NodeRegistry, parse_status
from alert_service.plot import plot_report
from alert_service.store_factory import open_alert_store
from alert_service.views_log import clock, open_existing_log
from facewire.cli_common import common_options, fail_cleanly, settings_from
from facewire.config import MqttSettings, Settings
from facewire.errors import ConfigError
from facewire.mqtt import MqttConnection
from facewire.schema.stats import ThresholdReport
from facewire.topics import Topics

STATE_STYLE = {"online": "green", "stale": "yellow", "offline": "red"}


def read_retained(settings: MqttSettings, topic: str, wait: float) -> dict[str, bytes]:
    """The retained messages on ``topic`` (a filter): collected until 0.3 s pass without one, at most ``wait``."""
    found: dict[str, bytes] = {}
    changed = threading.Event()

    def keep(message: object) -> None:
        found[message.topic] = bytes(message.payload)  # type: ignore[attr-defined]
        changed.set()

    connection = MqttConnection(settings, f"facewire-view-{os.getpid()}")
    connection.subscribe(topic, keep)
    connection.connect()
    deadline = time.monotonic() + wait
    try:
        changed.wait(min(wait, 1.0))
        while time.monotonic() < deadline and changed.is_set():
            changed.clear()
            changed.wait(0.3)
    finally:
        connection.close()
    return {t: p for t, p in found.items() if p}


@click.group("alerts", invoke_without_command=True)
@common_options
@click.option("--database", type=click.Path(path_type=Path, dir_okay=False), default=None, help="SQLite file.")
@click.option("--all", "show_all", is_flag=True, help="Include acknowledged alerts.")
@click.option("--node", default=None, help="Only alerts of this node.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.pass_context
@fail_cleanly
def alerts_command(
    ctx: click.Context,
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    database: Path | None,
    show_all: bool,
    node: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Alerts raised by the alert service, newest first (unacknowledged only unless --all)."""
    settings = settings_from(config_file, broker_url, verbose, alerts={"database": database})
    ctx.obj = settings.alerts.database_url or settings.alerts.database
    if ctx.invoked_subcommand is not None:
        return
    if not settings.alerts.database_url and not settings.alerts.database.exists():
        raise ConfigError(f"no alert database at {settings.alerts.database}")
    store = open_alert_store(ctx.obj)
    try:
        stored = store.alerts(limit, unacked_only=not show_all, node=node)
    finally:
        store.close()
    if as_json:
        for item in stored:
            click.echo(json.dumps({**json.loads(item.alert.to_json()), "count": item.count, "acked_by": item.acked_by}))
        return
    table = Table("raised", "id", "rule", "node", "message", "count", "acked", "webhook", header_style="bold")
    for item in stored:
        acked = "" if item.acked_at is None else f"{item.acked_by} {clock(item.acked_at)}"
        style = "dim" if item.acked_at is not None else "red"
        alert = item.alert
        table.add_row(
            clock(alert.raised_at), alert.id, alert.rule, alert.node, alert.message, str(item.count), acked,
            item.webhook, style=style,
        )  # fmt: skip
    Console().print(table)


@alerts_command.command("ack")
@click.argument("keys", nargs=-1, required=True)
@click.option("--by", default=None, help="Who acknowledges (default: the login name).")
@click.pass_obj
@fail_cleanly
def alerts_ack(database: Path | str, keys: tuple[str, ...], by: str | None) -> None:
    """Acknowledge alerts by id."""
    store = open_alert_store(database)
    try:
        for key in keys:
            done = store.acknowledge(key, by or getpass.getuser(), time.time())
            click.echo(f"{key}: {'acknowledged' if done else 'not found or already acknowledged'}")
    finally:
        store.close()


@click.group("stats", invoke_without_command=True)
@common_options
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a PNG plot here.")
@click.option("--json", "as_json", is_flag=True, help="Print the published JSON.")
@click.option("--wait", type=float, default=5.0, show_default=True, help="Seconds to wait for the broker.")
@click.pass_context
@fail_cleanly
def stats_command(
    ctx: click.Context,
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    plot: Path | None,
    as_json: bool,
    wait: float,
) -> None:
    """The threshold statistics the stats subscriber publishes (retained): FAR, FRR, recommendations."""
    settings = settings_from(config_file, broker_url, verbose)
    ctx.obj = settings
    if ctx.invoked_subcommand is not None:
        return
    topic = Topics(settings.mqtt.topic_prefix).stats_thresholds()
    payload = read_retained(settings.mqtt, topic, wait).get(topic)
    if payload is None:
        raise ConfigError(f"nothing retained on {topic} (is 'alert-service run stats' running?)")
    if as_json:
        click.echo(payload.decode())
        return
    stats = ThresholdReport.from_json(payload)
    print_report(stats, Console())
    if plot is not None:
        plot_report(stats, plot)
        click.echo(f"plot written to {plot}", err=True)


def print_report(stats: ThresholdReport, console: Console) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in stats.counts.items())
    console.print(f"[bold]gallery[/] {stats.gallery_version or '-'}  model {stats.model or '-'}  ({counts})")
    for label, point in (("recommended at FAR " + f"{stats.target_far:g}", stats.recommended), ("EER", stats.eer)):
        if point is not None:
            console.print(
                f"[bold]{label}[/]: threshold {point.threshold:.3f} (FAR {point.far:.2e}, FRR {point.frr:.2e},"
                f" {point.method})"
            )
    table = Table("threshold", "FAR", "FRR", "live unknown", header_style="bold")
    for row in stats.grid:
        if 0.2 <= row.threshold <= 0.8:
            table.add_row(*(_cell(getattr(row, k)) for k in ("threshold", "far", "frr", "unknown_share")))
    console.print(table)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@stats_command.command("confirm")
@click.argument("node")
@click.argument("seq", type=int)
@click.argument("person", required=False)
@click.option("--stranger", is_flag=True, help="The face belongs to nobody enrolled.")
@click.option("--database", type=click.Path(path_type=Path, dir_okay=False), default=None, help="SQLite log file.")
@click.pass_obj
@fail_cleanly
def stats_confirm(
    settings: Settings, node: str, seq: int, person: str | None, stranger: bool, database: Path | None
) -> None:
    """Record who result NODE/SEQ really was (PERSON, or --stranger); the statistics use it."""
    if stranger == (person is not None):
        raise ConfigError("give either PERSON or --stranger")
    path = database or settings.recorder.database_url or settings.recorder.database
    store = open_existing_log(path)
    try:
        store.confirm(node, seq, None if stranger else person, time.time())
    finally:
        store.close()
    click.echo(f"{node}/{seq} confirmed as {'a stranger' if stranger else person}")


@click.command("nodes")
@common_options
@click.option("--wait", type=float, default=3.0, show_default=True, help="Seconds to collect retained status.")
@click.option("--stale-after", type=float, default=None, help="Seconds without heartbeat before 'stale'.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@fail_cleanly
def nodes_command(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    wait: float,
    stale_after: float | None,
    as_json: bool,
) -> None:
    """Edge nodes with their state (online / stale / offline), rates and queue depth."""
    settings = settings_from(config_file, broker_url, verbose, nodes={"stale_after": stale_after})
    topics = Topics(settings.mqtt.topic_prefix)
    registry = NodeRegistry(settings.nodes.stale_after)
    now = time.time()
    for topic, payload in read_retained(settings.mqtt, topics.node_status_all(), wait).items():
        parsed = parse_status(topic, payload)
        if parsed is not None:
            registry.update(parsed[0], parsed[1], now)
    views = registry.views(time.time())
    if as_json:
        click.echo(json.dumps([view.__dict__ for view in views], indent=1))
        return
    table = Table("node", "state", "last heard", "frames/s", "faces/s", "queue", "model", header_style="bold")
    for view in views:
        table.add_row(
            view.node, view.state, f"{clock(view.last_seen)} ({view.age:.0f}s ago)", _cell(view.fps),
            _cell(view.faces_per_s), "-" if view.queue is None else str(view.queue), view.model,
            style=STATE_STYLE[view.state],
        )  # fmt: skip
    Console().print(table)
    if not views:
        click.echo("no node has announced itself on " + topics.node_status_all(), err=True)
