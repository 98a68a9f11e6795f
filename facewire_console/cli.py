"""The ``facewire`` umbrella command."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from alert_service.views import alerts_command, nodes_command, stats_command
from alert_service.views_log import log_command
from classifier_service.cli import main as classifier_main
from classifier_service.gallery.cli import COMMANDS as GALLERY_COMMANDS
from edge_agent.cli import main as edge_main
from facewire import __version__
from facewire.broker import LocalBroker, free_port
from facewire.cli_common import fail_cleanly, stop_event_on_signals
from facewire.config import reference_rows
from facewire.logs import setup_logging
from facewire_console.bench_cli import bench as bench_group
from facewire_console.broker_auth import ROLE_ACCOUNTS, add_node, add_role, reload_broker, render_secure_config
from facewire_console.demo import SAMPLE_DIR, run_demo
from facewire_console.models_cli import models as models_group
from facewire_console.monitor.cli import COMMANDS as MONITOR_COMMANDS
from facewire_console.operator_cli import COMMANDS as OPERATOR_COMMANDS
from facewire_console.web.cli import web_command


@click.group()
@click.version_option(__version__)
def main() -> None:
    """facewire: distributed face recognition on MQTT."""


main.add_command(edge_main, "edge")
main.add_command(classifier_main, "classifier")
for _view in (log_command, alerts_command, stats_command, nodes_command):
    main.add_command(_view)
for _command in MONITOR_COMMANDS:
    main.add_command(_command)
main.add_command(models_group, "models")
main.add_command(bench_group, "bench")
for _command in OPERATOR_COMMANDS:
    main.add_command(_command)
for _command in GALLERY_COMMANDS:
    main.add_command(_command)
main.add_command(web_command)


@main.command()
@click.option("--video", type=click.Path(path_type=Path, exists=True), default=SAMPLE_DIR / "short_hamilton_clip.mp4")
@click.option("--gallery", type=click.Path(path_type=Path, exists=True, file_okay=False), default=SAMPLE_DIR / "enroll")
@click.option("-v", "--verbose", count=True)
@fail_cleanly
def demo(video: Path, gallery: Path, verbose: int) -> None:
    """Broker + classifier + edge agent on a sample clip; prints names as they are recognised."""
    setup_logging(verbose)
    console = Console()
    names = run_demo(video, gallery, console)
    console.print("[bold]seen:[/] " + ", ".join(f"{name} x{count}" for name, count in names.most_common()))


@main.group()
def broker() -> None:
    """The development broker (mosquitto with broker/mosquitto.conf)."""


@broker.command("run")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=Path(".facewire-broker"))
@fail_cleanly
def broker_run(port: int | None, data: Path) -> None:
    """Run mosquitto in the foreground until Ctrl-C."""
    local = LocalBroker(data.resolve(), port=port or free_port()).start()
    click.echo(f"mosquitto on {local.url} (data in {data})")
    stop_event_on_signals().wait()
    local.stop()


COMPOSE_RELOAD = "docker compose exec mosquitto sh /mosquitto/config/facewire/docker-start.sh reload"


@broker.command("add-node")
@click.argument("node")
@click.option("--passwd", "passwd_file", type=click.Path(path_type=Path, dir_okay=False), default=Path("passwd"))
@click.option(
    "--secrets-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("secrets"),
    help="Where NODE.password is stored (0600) for the node's mqtt.password_file.",
)
@click.option(
    "--reload",
    "pid_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="PID file of a mosquitto that uses PASSWD: SIGHUP it (clients stay connected).",
)
@fail_cleanly
def broker_add_node(node: str, passwd_file: Path, secrets_dir: Path, pid_file: Path | None) -> None:
    """Create (or renew) the broker account NODE with a generated password; the ACL confines it to its topics."""
    password, stored = add_node(passwd_file, node, secrets_dir)
    click.echo(f"account {node} in {passwd_file}; password {password} stored in {stored}")
    click.echo(f"edge: --node-id {node} with FACEWIRE_MQTT__USERNAME={node} FACEWIRE_MQTT__PASSWORD_FILE={stored}")
    if pid_file is not None:
        click.echo(f"broker reloaded (SIGHUP to pid {reload_broker(pid_file)})")
    else:
        click.echo(f"reload the broker: {COMPOSE_RELOAD} (compose), or --reload PIDFILE")


@broker.command("add-account")
@click.argument("role", type=click.Choice(ROLE_ACCOUNTS))
@click.option("--passwd", "passwd_file", type=click.Path(path_type=Path, dir_okay=False), default=Path("passwd"))
@click.option("--secrets-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("secrets"))
@click.option("--reload", "pid_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@fail_cleanly
def broker_add_account(role: str, passwd_file: Path, secrets_dir: Path, pid_file: Path | None) -> None:
    """Create (or renew) a role account of broker/acl: admin, facewire (services), classifier, viewer, homeassistant."""
    password, stored = add_role(passwd_file, role, secrets_dir)
    click.echo(f"account {role} in {passwd_file}; password {password} stored in {stored}")
    if pid_file is not None:
        click.echo(f"broker reloaded (SIGHUP to pid {reload_broker(pid_file)})")


@broker.command("secure-config")
@click.option("--conf-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--port", type=int, default=8883, help="TLS listener port.")
def broker_secure_config(conf_dir: Path, port: int) -> None:
    """Print mosquitto.conf + secure.conf (TLS, passwords, ACL) for credentials and certificates in CONF_DIR."""
    click.echo(render_secure_config(conf_dir, port), nl=False)


@main.group()
def config() -> None:
    """Configuration helpers."""


MARKDOWN_HEADER = """# Configuration reference

Generated from the settings schema (`facewire/config.py`) by `facewire config reference --markdown`;
do not edit by hand (a test compares this file with the command's output).

Precedence, lowest to highest: built-in defaults < TOML file (`--config` or `FACEWIRE_CONFIG`) <
environment variables < command-line flags. In a TOML file an option `section.field` is `field = ...`
under `[section]`. `~/.cache` and `~/.local/state` stand for `$XDG_CACHE_HOME` and `$XDG_STATE_HOME`
when those are set.
"""


@config.command("reference")
@click.option("--markdown", is_flag=True, help="Print a Markdown table.")
def config_reference(markdown: bool) -> None:
    """Every option with its environment variable, default and meaning."""
    rows = reference_rows()
    if markdown:
        click.echo(MARKDOWN_HEADER)
        click.echo("| key | environment variable | default | meaning |\n|---|---|---|---|")
        for key, env, default, text in rows:
            shown = f"`{default}`" if default else ""
            click.echo(f"| `{key}` | `{env}` | {shown} | {text.replace('|', chr(92) + '|')} |")
        return
    table = Table("key", "environment variable", "default", "meaning")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
