"""A click group that imports a sub-command's module only when that command is used.

An edge install has neither FAISS (``server`` extra) nor argon2 (``web`` extra):
``facewire tail`` must not import the dashboard to start. The group's own
``--help`` lists every command from a short text kept here, so it imports
nothing. A command whose optional dependency is missing ends with one line
naming the extra to install, and exit code 1.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# Top-level module of an optional dependency -> the pyproject.toml extra that installs it.
EXTRAS = {
    "faiss": "server",
    "starlette": "web",
    "uvicorn": "web",
    "jinja2": "web",
    "argon2": "web",
    "itsdangerous": "web",
    "multipart": "web",
    "python_multipart": "web",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "matplotlib": "plot",
    "apprise": "notify",
    "torch": "export",
    "transformers": "export",
    "mediapipe": "mediapipe",
}


class LazyGroup(click.Group):
    """A group whose commands ``name -> ("module:attribute", short help)`` are imported on first use."""

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        module, attribute = self.lazy_commands[cmd_name][0].split(":")
        try:
            command: click.Command = getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as exc:
            missing_extra(exc)
            raise
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name][1]))
            elif not (command := self.commands[name]).hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            missing_extra(exc)
            raise


def missing_extra(exc: ModuleNotFoundError) -> None:
    """Exit 1 with the extra to install when ``exc`` is an optional dependency; return otherwise."""
    top = (exc.name or "").split(".")[0]
    if top in EXTRAS:
        extra = EXTRAS[top]
        click.secho(
            f"error: this command needs the '{extra}' extra: pip install 'facewire[{extra}]'", fg="red", err=True
        )
        sys.exit(1)
