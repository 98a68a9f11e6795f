"""The ``facewire`` umbrella command."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from facewire import __version__
from facewire.cli_common import fail_cleanly, stop_event_on_signals
from facewire.config import reference_rows
from facewire.logs import setup_logging
from facewire_console.broker import LocalBroker, free_port
from facewire_console.broker_auth import ROLE_ACCOUNTS, add_node, add_role, reload_broker, render_secure_config
from facewire_console.config_show import merged_rows
from facewire_console.demo import SAMPLE_DIR, run_demo
from facewire_console.lazy_group import LazyGroup

# Every command but demo, broker and config: its module is imported when the command is used, so an
# edge install (no FAISS, no dashboard) runs `facewire tail` (tests/test_installs.py). The short help
# is what `facewire --help` lists; a test compares it with the command's own.
LAZY_COMMANDS = {
    "alerts": (
        "alert_service.views:alerts_command",
        "Alerts raised by the alert service, newest first (unacknowledged only unless --all).",
    ),
    "api": ("facewire_console.api.cli:api_command", "The REST API (/api/v1) and its keys (docs/api.md)."),
    "bench": (
        "facewire_console.bench_cli:bench",
        "Benchmarks: JSON into bench/results/, tables into BENCHMARKS.md (each speed beside a same-run baseline).",
    ),
    "classifier": ("classifier_service.cli:main", "facewire classifier: embeddings in, names out."),
    "deploy": ("facewire_console.deploy_cli:deploy", "The docker compose stack (docs/deployment.md)."),
    "edge": ("edge_agent.cli:main", "facewire edge agent: faces in, embeddings out."),
    "enroll": (
        "classifier_service.gallery.cli:enroll",
        "Check, embed and enrol photos of PERSON (photos are checked here; only embeddings are sent).",
    ),
    "extract": (
        "facewire_console.operator_cli:extract",
        "Aligned crops of every distinct face in VIDEO_OR_DIR, one folder per face, ready to rename and enrol.",
    ),
    "forget": (
        "classifier_service.gallery.cli:forget",
        "Erase PERSON from every replica: embeddings, negatives, enrolment photos, cached vectors.",
    ),
    "frigate": (
        "facewire_console.frigate_cli:frigate",
        "Name the people in Frigate's person events and set each event's sub label (as Double Take did).",
    ),
    "homeassistant": (
        "facewire_console.monitor.cli:homeassistant",
        "Publish Home Assistant MQTT discovery and sensor states until Ctrl-C.",
    ),
    "identify": (
        "facewire_console.operator_cli:identify",
        "Every face in each PHOTO: its box, the nearest enrolled people and the decision.",
    ),
    "log": ("alert_service.views_log:log_command", "The detection log: who was seen where and when (newest first)."),
    "models": ("facewire_console.models_cli:models", "Model registry and export tools."),
    "monitor": (
        "facewire_console.monitor.cli:monitor",
        "Live full-screen view of results, nodes, alerts, thresholds, latency and dead letters.",
    ),
    "nodes": (
        "alert_service.views:nodes_command",
        "Edge nodes with their state (online / stale / offline), rates and queue depth.",
    ),
    "people": (
        "classifier_service.gallery.cli:people",
        "Enrolled people: photos, when enrolled, where and when last seen (every replica's answer merged).",
    ),
    "reload": (
        "classifier_service.gallery.cli:reload",
        "Re-read the dataset folder (new photos enrolled, removed ones dropped) on every replica.",
    ),
    "rename": (
        "classifier_service.gallery.cli:rename",
        "Rename OLD to NEW on every replica: embeddings, negatives, last seen, dataset folder (refused if NEW exists).",
    ),
    "scan": (
        "facewire_console.library_cli:scan",
        "Recognise the faces in every photo under ROOT: a line per file, a summary per person.",
    ),
    "search": (
        "facewire_console.library_cli:search",
        "The LIBRARY photos with the faces most like the largest face in PHOTO, enrolled or not.",
    ),
    "stats": (
        "alert_service.views:stats_command",
        "The threshold statistics the stats subscriber publishes (retained): FAR, FRR, recommendations.",
    ),
    "tail": (
        "facewire_console.monitor.cli:tail",
        "Decode the msgpack embedding stream (facewire/embeddings/+) one line per message.",
    ),
    "unknowns": (
        "classifier_service.gallery.cli:unknowns",
        "List clusters of unknown faces (size, first/last seen, nodes); ``unknowns name`` enrols one.",
    ),
    "web": (
        "facewire_console.web.cli:web_command",
        "The web dashboard: live results, detection log, face library, unknown visitors, alerts, thresholds.",
    ),
    "whereis": (
        "classifier_service.gallery.cli:whereis",
        "Last known location (node and time) of PERSON, from the classifiers' results.",
    ),
}


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS)
@click.version_option(__version__)
def main() -> None:
    """facewire: distributed face recognition on MQTT."""


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


# `broker` subcommands imported on first use, as LAZY_COMMANDS.
BROKER_LAZY_COMMANDS = {
    "bridge-config": (
        "facewire_console.broker_bridge:bridge_config",
        "Write the site broker's bridge to the centre (OUT/bridge-SITE.conf) and the centre's ACL section.",
    ),
}


@main.group(cls=LazyGroup, lazy_commands=BROKER_LAZY_COMMANDS)
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
when those are set. `facewire config show` prints the merged configuration and where each value came
from (default, file or environment variable; `--json` for scripts). A `FACEWIRE_*` environment variable
that matches no setting is reported as a warning, with the nearest setting's name.
"""


@config.command("show")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per setting.")
@fail_cleanly
def config_show(config_file: Path | None, as_json: bool) -> None:
    """The merged configuration: every setting's value and where it came from (default, file, environment)."""
    rows = merged_rows(config_file)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table("key", "value", "from")
    for row in rows:
        table.add_row(row["key"], str(row["value"]), row["source"])
    Console().print(table)


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
