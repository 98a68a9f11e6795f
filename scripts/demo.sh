#!/usr/bin/env bash
# Set up what the demo needs (mosquitto, .venv with facewire[server]), then run it: broker + classifier +
# edge agent on the bundled clip. The test suite's tools (PostgreSQL, Chromium, tmux) are scripts/test.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --demo
exec .venv/bin/facewire demo "$@"
