#!/usr/bin/env bash
# Set up everything, then run the demo: broker + classifier + edge agent on the bundled clip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/facewire demo "$@"
