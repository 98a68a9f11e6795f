"""The `facewire` group imports a command's module only when that command is used."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from facewire_console.cli import LAZY_COMMANDS, main
from harness.processes import ROOT


def test_the_listed_short_help_is_each_commands_own() -> None:
    context = click.Context(main)
    for name, (_target, short_help) in LAZY_COMMANDS.items():
        command = main.get_command(context, name)
        assert command is not None, name
        assert command.get_short_help_str(200) == short_help, f"{name}: update LAZY_COMMANDS in facewire_console/cli.py"


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    probe = (
        "import sys; from click.testing import CliRunner; from facewire_console.cli import main;"
        "result = CliRunner().invoke(main, ['--help']); assert result.exit_code == 0, result.output;"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('classifier_service', 'alert_service', 'edge_agent', 'faiss', 'starlette', 'argon2'));"
        "print(','.join(heavy)); print(result.output)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    imported, _, listing = result.stdout.partition("\n")
    assert imported == "", f"facewire --help imported {imported}"
    for name in LAZY_COMMANDS:
        assert f"  {name} " in listing, name


def test_a_lazy_command_runs() -> None:
    result = CliRunner().invoke(main, ["deploy", "--help"])
    assert result.exit_code == 0 and "init" in result.output
