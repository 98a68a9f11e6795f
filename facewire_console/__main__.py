"""Run as ``python -m facewire_console`` (the ``facewire`` command)."""

from facewire_console.cli import main

main()
