"""Run as ``python -m facewire``."""

from facewire.cli import main

main()
