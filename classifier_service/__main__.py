"""Run as ``python -m classifier_service``."""

from classifier_service.cli import main

main()
