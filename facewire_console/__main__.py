"""Run as ``python -m facewire``."""

from facewire_console.cli import main

main()
