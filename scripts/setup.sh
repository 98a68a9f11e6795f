#!/usr/bin/env bash
# Set up facewire on a fresh Debian/Ubuntu machine: mosquitto, a virtualenv in .venv, the package.
#   bash scripts/setup.sh          everything the test suite needs (scripts/test.sh, CI)
#   bash scripts/setup.sh --demo   only what the demo needs (scripts/demo.sh): mosquitto and
#                                  facewire[server] (the demo's classifier uses FAISS); no PostgreSQL,
#                                  Chromium, tmux or test tools
# Idempotent: a second run only re-installs when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0
[ "${1:-}" = "--demo" ] && demo=1

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
if [ "$demo" = 0 ]; then
  command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # the monitor's terminal tests drive it in tmux
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)  # storage tests start a throw-away server
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the web tests drive it with Playwright (no browser download)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "facewire needs Python >= 3.10")'
[ -x .venv/bin/python ] || python3 -m venv .venv
# Extras for the full test suite. The CLIP exporter needs torch (CPU build, ~750 MB): installed in CI
# (where the wheel is on local disk) or when FACEWIRE_WITH_EXPORT=1; elsewhere its tests skip with a message.
extras="dev,mediapipe"
if [ "${CI:-}" = "true" ] || [ "${FACEWIRE_WITH_EXPORT:-0}" = "1" ]; then
  extras="$extras,export"
fi
[ "$demo" = 1 ] && extras="server"
stamp=.venv/.facewire-installed
digest="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
want="$digest $extras"
installed="$(cat "$stamp" 2>/dev/null || true)"
# the demo is content with a full (test) install of the same files
if [ "$demo" = 1 ] && [ "${installed%% *}" = "$digest" ] && [[ "$installed" == *dev* ]]; then
  want="$installed"
fi
if [ "$installed" != "$want" ]; then
  echo "setup: installing facewire[$extras] into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  [ "$demo" = 1 ] && { echo "$want" > "$stamp"; exit 0; }
  # MediaPipe declares opencv-contrib-python, a second package writing the same cv2/ folder as our
  # opencv-python-headless: install it without its declared dependencies (its real ones are in the
  # `mediapipe` extra), so exactly one OpenCV owns cv2/.
  .venv/bin/python -m pip install -q --no-deps mediapipe==0.10.21 \
    || echo "setup: no mediapipe 0.10.21 wheel for this Python/CPU; MediaPipe options and tests are skipped" >&2
  echo "$want" > "$stamp"
fi
