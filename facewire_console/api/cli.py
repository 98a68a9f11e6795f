"""``facewire api serve`` (the REST API on its own), ``facewire api add-key`` and ``facewire api revoke``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.errors import ConfigError
from facewire_console.api.keys import SCOPES, KeyStore, keys_file


@click.group("api")
def api_command() -> None:
    """The REST API (/api/v1) and its keys (docs/api.md)."""


@api_command.command("serve")
@common_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8081, show_default=True, help="Port.")
@fail_cleanly
def serve(config_file: Path | None, broker_url: str | None, verbose: int, host: str, port: int) -> None:
    """Serve /api/v1 alone (``facewire web`` serves it too) until SIGTERM / Ctrl-C."""
    settings = settings_from(config_file, broker_url, verbose)
    import uvicorn  # the `web` extra: imported by the command that uses it

    from facewire_console.api.app import standalone

    if not any(key.revoked is None for key in KeyStore(keys_file(settings)).names()):
        click.secho(f"warning: no API key in {keys_file(settings)}: add one with `facewire api add-key`", err=True)
    config = uvicorn.Config(standalone(settings), host=host, port=port, log_level="warning", server_header=False)
    click.echo(f"facewire api on http://{host}:{port}/api/v1 (broker {settings.mqtt.url})", err=True)
    stop_event_on_signals()  # uvicorn re-raises SIGTERM after its graceful shutdown: exit status 0
    uvicorn.Server(config).run()


@api_command.command("add-key")
@common_options
@click.argument("name")
@click.option(
    "--scope", type=click.Choice(SCOPES), required=True, help="recognize < read (+ queries) < admin (+ subjects)."
)
@click.option("--per-minute", type=int, default=60, show_default=True, help="Rate limit of this key.")
@fail_cleanly
def add_key(
    config_file: Path | None, broker_url: str | None, verbose: int, name: str, scope: str, per_minute: int
) -> None:
    """Create key NAME (replacing an older one of that name); the key is printed once, as the last line."""
    settings = settings_from(config_file, broker_url, verbose)
    path = keys_file(settings)
    secret = KeyStore(path).add(name, scope, per_minute)
    click.echo(f"key {name} (scope {scope}, {per_minute}/min) stored hashed in {path}; it is shown only now:")
    click.echo(secret)


@api_command.command("revoke")
@common_options
@click.argument("name")
@fail_cleanly
def revoke(config_file: Path | None, broker_url: str | None, verbose: int, name: str) -> None:
    """Revoke key NAME (a running API refuses it from its next request)."""
    settings = settings_from(config_file, broker_url, verbose)
    path = keys_file(settings)
    if not KeyStore(path).revoke(name):
        raise ConfigError(f"no live key {name!r} in {path}")
    click.echo(f"revoked {name} in {path}")


@api_command.command("openapi")
def openapi_command() -> None:
    """Print the OpenAPI 3.1 document (docs/openapi.json is this output; a test compares them)."""
    from facewire_console.api.openapi import document

    click.echo(json.dumps(document(), indent=2))
