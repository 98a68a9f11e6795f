"""``facewire frigate``: the Frigate bridge until SIGTERM / Ctrl-C (facewire_console/frigate.py)."""

from __future__ import annotations

from pathlib import Path

import click

from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.faces import create_analyzer
from facewire_console.frigate import FrigateApi, FrigateBridge


@click.command("frigate")
@common_options
@click.option("--frigate-url", required=True, help="Frigate's HTTP address, e.g. http://frigate.local:5000.")
@click.option("--frigate-prefix", default="frigate", show_default=True, help="Frigate's MQTT topic_prefix.")
@click.option("--per-minute", type=int, default=30, show_default=True, help="Person events handled a minute.")
@fail_cleanly
def frigate(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    frigate_url: str,
    frigate_prefix: str,
    per_minute: int,
) -> None:
    """Name the people in Frigate's person events and set each event's sub label (as Double Take did)."""
    settings = settings_from(config_file, broker_url, verbose)
    edge = settings.edge
    bridge = FrigateBridge(
        settings,
        create_analyzer(settings.model, edge.det_threshold, edge.min_face),
        FrigateApi(frigate_url),
        frigate_prefix,
        max(1, per_minute),
    )
    bridge.start()
    click.echo(f"frigate bridge: {frigate_prefix}/events on {settings.mqtt.url} -> {frigate_url}", err=True)
    stop_event_on_signals().wait()
    bridge.stop()
    click.echo(f"frigate bridge stopped: {bridge.counts}", err=True)
