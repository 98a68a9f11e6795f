#!/usr/bin/env bash
# The edge agent on the bundled clip under an aarch64 Python in QEMU user mode, compared with the
# same run on this machine: same faces published (frame and track ids), cosine of each pair > 0.99.
# Correctness only: emulation says nothing about a Pi's speed (docs/deployment.md).
#
#   sudo scripts/aarch64-edge-check.sh [--skip-frames N]
#
# Needs root (apt-get, debootstrap, mount, chroot) and Debian's apt mirror plus PyPI. Idempotent: each
# step is skipped when already done; the checkout's sources are copied into the root and the package
# reinstalled (without its dependencies) on every run. Environment:
#   FACEWIRE_ARM64_ROOT  where the arm64 root lives (default /tmp/arm64root)
#   DEBIAN_MIRROR        default: this machine's apt mirror (deb.debian.org)
#   CHECK_TIMEOUT        seconds for the comparison (default 3600)
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${FACEWIRE_ARM64_ROOT:-/tmp/arm64root}"
MIRROR="${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -oE 'https?://[^ ]+/debian$' | head -1 || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SRC=/opt/facewire/src
VENV=/opt/facewire/venv
SOURCES=(pyproject.toml README.md facewire facewire_console edge_agent classifier_service alert_service)

step() { printf '== %s\n' "$*"; }
# chroot with a clean environment (this shell's PIP_* settings point at host folders); pip trusts this
# machine's CA bundle (copied in: PyPI may be reached through a proxy with its own CA). in_root SECONDS CMD...
in_root() { timeout "$1" chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root PIP_CERT=/etc/ssl/host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONSTRAINT=/opt/facewire/constraints.txt "${@:2}"; }

if [ ! -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || ! command -v debootstrap >/dev/null; then
    step "installing qemu-user-static, debootstrap, binfmt-support"
    timeout 300 apt-get update -q
    timeout 600 apt-get install -y -q qemu-user-static debootstrap binfmt-support
fi

if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    step "registering qemu-aarch64 with binfmt_misc"
    update-binfmts --enable qemu-aarch64
fi

if [ ! -x "$ROOT/usr/bin/python3" ] || [ -d "$ROOT/debootstrap" ]; then
    step "debootstrap arm64 bookworm into $ROOT from $MIRROR"
    timeout 3000 debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$ROOT" "$MIRROR"
fi

mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys"
# qemu 7.2 passes this machine's x86 /proc/cpuinfo through; onnxruntime's cpuinfo finds no ARM core in
# it and libonnxruntime.so segfaults while loading. An aarch64 one (Cortex-A72, as a Pi 4) goes over it.
mkdir -p "$ROOT/opt/facewire"
printf '%s\n' 'processor	: 0' 'BogoMIPS	: 108.00' 'Features	: fp asimd evtstrm crc32 cpuid' \
    'CPU implementer	: 0x41' 'CPU architecture: 8' 'CPU variant	: 0x0' 'CPU part	: 0xd08' \
    'CPU revision	: 3' '' >"$ROOT/opt/facewire/cpuinfo"
grep -q " $ROOT/proc/cpuinfo " /proc/mounts || mount --bind "$ROOT/opt/facewire/cpuinfo" "$ROOT/proc/cpuinfo"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca.crt"

step "copying the checkout's sources and the clip into $ROOT$SRC"
rm -rf "$ROOT$SRC"
mkdir -p "$ROOT$SRC/data/sample"
for name in "${SOURCES[@]}"; do
    cp -a "$HERE/$name" "$ROOT$SRC/"
done
find "$ROOT$SRC" -name __pycache__ -prune -exec rm -rf {} +
cp "$HERE/data/sample/short_hamilton_clip.mp4" "$ROOT$SRC/data/sample/"
# the same versions as this checkout's .venv, so that the two runs differ by architecture only
"$HERE/.venv/bin/pip" freeze --exclude-editable | grep -v -e '^facewire' -e ' @ ' >"$ROOT/opt/facewire/constraints.txt"

if [ ! -x "$ROOT$VENV/bin/edge-agent" ]; then
    step "pip install '.[edge]' into $VENV (aarch64 wheels from PyPI, under emulation)"
    in_root 600 python3 -m venv "$VENV"
    in_root 3000 "$VENV/bin/pip" install --quiet --only-binary=:all: --no-binary=facewire \
        "$SRC[edge]"
else
    step "reinstalling this checkout's package (dependencies already in $VENV)"
    in_root 1200 "$VENV/bin/pip" install --quiet --no-deps --force-reinstall "$SRC"
fi
in_root 300 "$VENV/bin/python" -c 'import platform, cv2, onnxruntime; print(platform.machine(), cv2.__version__, onnxruntime.__version__)'

step "edge-agent run --once on the clip: this machine, then aarch64 under QEMU (one broker, one subscriber)"
cd "$HERE"
timeout "${CHECK_TIMEOUT:-3600}" .venv/bin/python -m harness.aarch64 "$ROOT" "$@"
