#!/usr/bin/env bash
# Set up everything, then lint, type-check and run the whole test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"` for the fast tests only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy facewire edge_agent classifier_service alert_service facewire_console harness
.venv/bin/lint-imports
status=0
# Two workers, one test file each at a time (module fixtures stay in one process); FACEWIRE_TEST_WORKERS=0 runs serially.
.venv/bin/pytest -n "${FACEWIRE_TEST_WORKERS:-2}" --dist loadfile "$@" || status=$?
# pytest's 5 means "no tests collected": that is a failure of the suite, not a pass.
exit $status
