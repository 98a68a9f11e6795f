"""``facewire deploy init DIR``: everything the docker compose stack needs before its first start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from facewire.cli_common import fail_cleanly
from facewire_console.deploy import IMAGE_UID, init_secrets


@click.group()
def deploy() -> None:
    """The docker compose stack (docs/deployment.md)."""


@deploy.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=Path("."))
@click.option(
    "--owner",
    type=int,
    default=None,
    help=f"Owner uid of the secrets (default: {IMAGE_UID}, the images' user, when run as root; else yours).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@fail_cleanly
def deploy_init(directory: Path, owner: int | None, as_json: bool) -> None:
    """Create DIRECTORY/secrets/ with generated passwords (0600); existing files are kept."""
    if owner is None and os.geteuid() == 0:
        owner = IMAGE_UID
    done = init_secrets(directory, owner)
    if as_json:
        rows = [{"path": str(item.path), "created": item.created, "meaning": item.meaning} for item in done]
        click.echo(json.dumps({"secrets": rows, "owner": owner}))
        return
    for item in done:
        click.echo(f"{'created' if item.created else 'kept   '} {item.path}  {item.meaning}")
    if owner is None:
        click.secho(
            f"warning: the secrets belong to you (uid {os.geteuid()}); the containers run as uid {IMAGE_UID} "
            "and cannot read a 0600 file of yours: run this as root, or chown them",
            fg="yellow",
            err=True,
        )
