"""The ``alert-service`` command: ``alert-service run recorder|alerts|stats|nodes|all``."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import click

from alert_service.alerts import AlertEngine, AlertService
from alert_service.forward import HttpSender, ResultForwarder
from alert_service.forward_queue import ForwardQueue
from alert_service.nodes import NodeRegistry, NodeWatcher
from alert_service.recorder import Recorder
from alert_service.rules import RuleBook
from alert_service.stats import ThresholdStats
from alert_service.stats_service import StatsService
from alert_service.store_factory import open_alert_store, open_result_log
from alert_service.subscriber import SESSION_EXPIRY_SECONDS, ResultSubscriber
from alert_service.supervisor import ROLES, supervise
from alert_service.webhook import AlertSender, Channel, WebhookChannel
from facewire import __version__
from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.config import Settings
from facewire.errors import ConfigError
from facewire.mqtt import MqttConnection
from facewire.storage.url import configured
from facewire.topics import Topics

HEARTBEAT_SECONDS = 10.0


@click.group()
@click.version_option(__version__, package_name="facewire")
def main() -> None:
    """facewire result subscribers: detection log, alerts, threshold statistics, active nodes."""


@main.command()
@click.argument("role", type=click.Choice([*ROLES, "all", "forward"]))
@common_options
@click.option("--instance", default=None, help="Replica id (stable across restarts keeps its session).")
@click.option("--database", type=click.Path(path_type=Path, dir_okay=False), default=None, help="SQLite file.")
@click.option("--gallery", type=click.Path(path_type=Path, file_okay=False), default=None, help="Enrolment folder.")
@click.option("--webhook", default=None, help="POST alerts to this URL.")
@click.option("--url", "forward_url", default=None, help="forward: POST every result to this URL.")
@click.option("--only", type=click.Choice(["all", "known", "unknown"]), default=None, help="forward: which results.")
@click.option("--person", "people", multiple=True, help="forward: only results naming PERSON (repeatable).")
@fail_cleanly
def run(
    role: str,
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    instance: str | None,
    database: Path | None,
    gallery: Path | None,
    webhook: str | None,
    forward_url: str | None,
    only: str | None,
    people: tuple[str, ...],
) -> None:
    """Run one subscriber (or all of them, each in its own process) until SIGTERM / Ctrl-C.

    ``forward`` is not part of ``all``: it needs an endpoint (``--url`` or ``forward.url``).
    """
    settings = settings_from(
        config_file,
        broker_url,
        verbose,
        recorder={"database": database, "instance": instance},
        alerts={"database": database, "instance": instance, "webhook_url": webhook},
        stats={"instance": instance},
        classifier={"gallery": gallery},
        forward={"url": forward_url, "only": only, "people": list(people) or None, "instance": instance},
    )
    stop = stop_event_on_signals()
    if role == "all":
        supervise(_child_args(config_file, broker_url, verbose, instance, database, gallery, webhook), stop)
        return
    name = instance or f"{socket.gethostname()}-{os.getpid()}"
    runners = {"recorder": run_recorder, "alerts": run_alerts, "stats": run_stats, "nodes": run_nodes}
    (runners | {"forward": run_forward})[role](settings, name, bool(instance), stop)


def _child_args(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    instance: str | None,
    database: Path | None,
    gallery: Path | None,
    webhook: str | None,
) -> list[str]:
    args = ["-v"] * verbose
    for flag, value in (
        ("--config", config_file),
        ("--broker", broker_url),
        ("--instance", instance),
        ("--database", database),
        ("--gallery", gallery),
        ("--webhook", webhook),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


def _connection(settings: Settings, service: str, name: str, persistent: bool, manual_ack: bool) -> MqttConnection:
    return MqttConnection(
        settings.mqtt,
        f"{service}-{name}",
        session_expiry=SESSION_EXPIRY_SECONDS if persistent else 0,
        manual_ack=manual_ack,
        receive_maximum=1000 if manual_ack else 0,
    )


def _serve(subscriber: ResultSubscriber, banner: str, stop: threading.Event) -> None:
    """Connect with the subscriber's last will, start it, send heartbeats until ``stop``, then stop it."""
    subscriber.connection.set_will(subscriber.will())
    subscriber.connection.connect()
    subscriber.start()
    click.echo(banner, err=True)
    while not stop.wait(HEARTBEAT_SECONDS):
        subscriber.heartbeat()
    subscriber.stop()


def run_recorder(settings: Settings, name: str, persistent: bool, stop: threading.Event) -> None:
    target = configured(settings.recorder.database_url, settings.recorder.database)
    store = open_result_log(target.url or str(target.path))
    connection = _connection(settings, "recorder", name, persistent, manual_ack=True)
    recorder = Recorder(store, connection, Topics(settings.mqtt.topic_prefix), settings.recorder, name)
    _serve(recorder, f"recorder {name} writing {target}", stop)
    store.close()


def run_alerts(settings: Settings, name: str, persistent: bool, stop: threading.Event) -> None:
    conf = settings.alerts
    rules = RuleBook(conf)
    target = configured(conf.database_url, conf.database)
    store = open_alert_store(target.url or str(target.path))
    channels: list[Channel] = [WebhookChannel(conf.webhook_url)] if conf.webhook_url else []
    if conf.apprise_urls:
        from alert_service.apprise_channel import AppriseChannel  # the `notify` extra

        channels.append(AppriseChannel(conf.apprise_urls))
    hook = None
    if channels:
        hook = AlertSender(
            channels, conf.webhook_timeout, conf.webhook_retries, conf.webhook_queue, store.set_webhook_status
        )
    connection = _connection(settings, "alerts", name, persistent, manual_ack=True)
    service = AlertService(AlertEngine(rules, store), connection, Topics(settings.mqtt.topic_prefix), conf, name, hook)
    _serve(service, f"alerts {name} ready ({target})", stop)
    store.close()


def run_stats(settings: Settings, name: str, _persistent: bool, stop: threading.Event) -> None:
    from facewire.gallery_folder import load_gallery

    conf = settings.stats
    gallery_dir = settings.classifier.gallery if settings.classifier.gallery.is_dir() else None
    if gallery_dir is None:
        click.echo(f"stats: no gallery folder at {settings.classifier.gallery}; live scores only", err=True)
    target = configured(settings.recorder.database_url, settings.recorder.database)
    result_log = open_result_log(target.url) if target.url else None
    if target.path is not None and target.path.exists():
        result_log = open_result_log(target.path)
    connection = _connection(settings, "stats", name, False, manual_ack=False)
    service = StatsService(
        ThresholdStats(conf.target_far, conf.grid_step),
        connection,
        Topics(settings.mqtt.topic_prefix),
        conf,
        name,
        gallery_dir,
        lambda: load_gallery(settings),
        result_log,
    )
    connection.set_will(service.will())
    connection.connect()
    service.start()
    click.echo(f"stats {name} ready", err=True)
    service.run(stop, HEARTBEAT_SECONDS)
    service.stop()
    if result_log is not None:
        result_log.close()


def run_nodes(settings: Settings, name: str, _persistent: bool, stop: threading.Event) -> None:
    connection = _connection(settings, "nodes", name, False, manual_ack=False)
    watcher = NodeWatcher(
        NodeRegistry(settings.nodes.stale_after), connection, Topics(settings.mqtt.topic_prefix), name
    )
    connection.set_will(watcher.will())
    connection.connect()
    watcher.start()
    click.echo(f"nodes {name} watching", err=True)
    watcher.run(stop, settings.nodes.publish_interval)
    watcher.stop()


def run_forward(settings: Settings, name: str, persistent: bool, stop: threading.Event) -> None:
    conf = settings.forward
    if not conf.url:
        raise ConfigError("forward needs an endpoint: --url URL or forward.url (FACEWIRE_FORWARD__URL)")
    outbox = ForwardQueue(conf.queue)
    connection = _connection(settings, "forward", name, persistent, manual_ack=True)
    forwarder = ResultForwarder(
        outbox, HttpSender(outbox, conf), connection, Topics(settings.mqtt.topic_prefix), conf, name
    )
    _serve(forwarder, f"forward {name} to {conf.url} ({outbox.depth} pending in {conf.queue})", stop)
    outbox.close()
