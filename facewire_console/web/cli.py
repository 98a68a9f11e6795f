"""``facewire web`` (run the dashboard) and ``facewire web add-user`` (create or reset an account)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from types import FrameType

import click

from facewire.cli_common import common_options, fail_cleanly, settings_from, stop_event_on_signals
from facewire.config import Settings
from facewire.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group("web", invoke_without_command=True)
@common_options
@click.option("--host", default=None, help="Address to bind (default web.host: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default web.port: 8080).")
@click.pass_context
@fail_cleanly
def web_command(
    ctx: click.Context,
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    host: str | None,
    port: int | None,
) -> None:
    """The web dashboard: live results, detection log, face library, unknown visitors, alerts, thresholds."""
    settings = settings_from(config_file, broker_url, verbose, web={"host": host, "port": port})
    if ctx.invoked_subcommand is not None:
        ctx.obj = settings
        return
    serve(settings)


def serve(settings: Settings) -> None:
    """Run the dashboard until SIGTERM / Ctrl-C (uvicorn handles both)."""
    import uvicorn

    from facewire_console.web.app import create_app
    from facewire_console.web.auth import UserStore

    web = settings.web
    if not UserStore(web.users_file).names():
        raise ConfigError(f"no dashboard account in {web.users_file}: create one with `facewire web add-user NAME`")
    if not is_loopback(web.host):
        click.secho(
            f"warning: listening on {web.host}, not loopback: put it behind HTTPS (cookies are Secure-only)",
            fg="yellow",
            err=True,
        )
    app = create_app(settings)
    hub = app.state.dashboard.hub

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            hub.close_streams()  # open event streams end now, so the graceful shutdown needs no timeout
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=web.host,
        port=web.port,
        log_level="warning",
        timeout_graceful_shutdown=3,
        proxy_headers=False,
        server_header=False,
    )
    click.echo(f"facewire web on http://{web.host}:{web.port} (broker {settings.mqtt.url})", err=True)
    # uvicorn re-raises SIGTERM / SIGINT after its graceful shutdown; with our handlers in place
    # that ends the process with status 0, as every other facewire service does.
    stop_event_on_signals()
    Server(config).run()


@web_command.command("add-user")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_obj
@fail_cleanly
def add_user(settings: Settings, name: str, password_stdin: bool) -> None:
    """Create the dashboard account NAME, or set a new password (argon2id hash in web.users_file)."""
    from facewire_console.web.auth import UserStore  # the `web` extra: imported by the commands that use it

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    new = UserStore(settings.web.users_file).add(name, password)
    click.echo(f"{'created' if new else 'updated'} {name} in {settings.web.users_file}")


@web_command.command("unlock")
@click.argument("name")
@click.pass_obj
@fail_cleanly
def unlock(settings: Settings, name: str) -> None:
    """Lift the login lockouts of NAME (and of the addresses it was locked from) at its next login attempt."""
    from facewire_console.web.auth import UnlockRequests  # the `web` extra: imported by the commands that use it

    UnlockRequests(settings.web.data_dir / "unlock").request(name)
    click.echo(f"{name}: lockouts lifted at the next login to the dashboard")
