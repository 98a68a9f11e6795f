"""The edge agent under an aarch64 interpreter (QEMU user mode, in a chroot) against the same run here.

The arm64 root is prepared by scripts/aarch64-edge-check.sh: Debian bookworm (debootstrap), a
virtualenv at ``/opt/facewire/venv`` holding ``.[edge]`` from a copy of this checkout, and the clip.
Both runs publish to a real mosquitto on this machine's loopback (a chroot shares the network);
a subscriber here collects ``facewire/embeddings/NODE`` and the two sets are compared by
(frame, track): counts, ids and the cosine of each pair.

    python -m harness.aarch64 /tmp/arm64root [--skip-frames N]     # prints the comparison as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facewire.schema import FaceEmbedding
from facewire_console.broker import LocalBroker
from harness.processes import ROOT, SAMPLE, Collector

CLIP = SAMPLE / "short_hamilton_clip.mp4"
ROOT_SRC = "/opt/facewire/src"  # inside the arm64 root
ROOT_VENV = "/opt/facewire/venv"
NODE = "arm64-test"
# A file's frames are stamped with the wall clock (facewire/sources.py), and the agent's track expiry,
# refresh and full-scan intervals are seconds: a run 30x slower under emulation would split tracks and
# refresh more often. These make both runs depend on the frames only (same values on both sides).
FRAME_ONLY = {
    "FACEWIRE_EDGE__TRACK_MAX_AGE": "1000000",
    "FACEWIRE_EDGE__REFRESH_SECONDS": "1000000",
    "FACEWIRE_EDGE__FULL_SCAN_SECONDS": "1000000",
}


@dataclass(frozen=True)
class EdgeRun:
    """What one `edge-agent run --once` published, its summary line and its wall time."""

    faces: list[FaceEmbedding]
    summary: str
    seconds: float


@dataclass(frozen=True)
class Comparison:
    """The aarch64 run against the x86 one."""

    x86_published: int
    arm64_published: int
    same_ids: bool
    only_x86: list[tuple[int, int]]
    only_arm64: list[tuple[int, int]]
    min_cosine: float
    max_cosine: float
    x86_summary: str
    arm64_summary: str
    x86_seconds: float
    arm64_seconds: float


def edge_argv(source: str, broker_url: str, skip_frames: int) -> list[str]:
    """The arguments after `edge-agent`."""
    argv = ["run", "--broker", broker_url, "--node-id", NODE, "--source", source, "--once"]
    return argv + (["--skip-frames", str(skip_frames)] if skip_frames else [])


def chroot_command(root: Path, args: list[str]) -> list[str]:
    """`edge-agent ARGS` inside the arm64 root (the kernel hands aarch64 binaries to qemu via binfmt)."""
    return ["chroot", str(root), f"{ROOT_VENV}/bin/edge-agent", *args]


def check_root(root: Path) -> str | None:
    """Why ``root`` cannot run the edge agent here (None: it can)."""
    if os.geteuid() != 0:
        return "chroot needs root"
    if not (root / ROOT_VENV.lstrip("/") / "bin" / "edge-agent").is_file():
        return f"{root} has no {ROOT_VENV}/bin/edge-agent (run scripts/aarch64-edge-check.sh)"
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").is_file():
        return "no binfmt handler for aarch64 (apt-get install qemu-user-static binfmt-support)"
    if not (root / "proc" / "self").exists():
        return f"{root}/proc is not mounted (run scripts/aarch64-edge-check.sh)"
    if "CPU implementer" not in (root / "proc" / "cpuinfo").read_text():
        # without an ARM /proc/cpuinfo, libonnxruntime.so segfaults while loading under qemu 7.2
        return f"{root}/proc/cpuinfo is this machine's (run scripts/aarch64-edge-check.sh)"
    return None


def collect(command: list[str], broker: LocalBroker, env: dict[str, str], timeout: float) -> EdgeRun:
    """Run one edge agent ``command`` and collect what it publishes on facewire/embeddings/NODE."""
    collector = Collector(broker.url, [f"facewire/embeddings/{NODE}"]).start()
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
        output = result.stdout + result.stderr  # the summary line is logged on stderr
        summary = next((line for line in output.splitlines() if " frames, " in line), output[-300:])
        time.sleep(1.0)  # the last PUBACKed messages reach the subscriber
        faces = [FaceEmbedding.from_msgpack(payload) for _, payload in collector.matching(lambda _: True)]
    finally:
        collector.stop()
    return EdgeRun(sorted(faces, key=lambda face: face.seq), summary.strip(), seconds)


def compare(x86: EdgeRun, arm64: EdgeRun) -> Comparison:
    """Match the two runs' faces by (frame, track) and measure the cosine of each pair."""
    left = {(face.frame, face.track): face.emb for face in x86.faces}
    right = {(face.frame, face.track): face.emb for face in arm64.faces}
    shared = sorted(left.keys() & right.keys())
    cosines = [float(np.dot(left[key], right[key])) for key in shared] or [float("nan")]
    return Comparison(
        x86_published=len(x86.faces),
        arm64_published=len(arm64.faces),
        same_ids=left.keys() == right.keys() and len(left) == len(x86.faces) == len(arm64.faces),
        only_x86=sorted(left.keys() - right.keys()),
        only_arm64=sorted(right.keys() - left.keys()),
        min_cosine=min(cosines),
        max_cosine=max(cosines),
        x86_summary=x86.summary,
        arm64_summary=arm64.summary,
        x86_seconds=round(x86.seconds, 1),
        arm64_seconds=round(arm64.seconds, 1),
    )


def run_both(root: Path, skip_frames: int = 0, timeout: float = 3600) -> Comparison:
    """The clip through the edge agent of this checkout's venv and of the arm64 root, one broker."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", **FRAME_ONLY}
    # inside the root: fresh state (sequence counter, spool) and model cache in its /tmp for each run
    with (
        tempfile.TemporaryDirectory(prefix="fw-aarch64-") as work,
        tempfile.TemporaryDirectory(prefix="fw-state-", dir=root / "tmp") as state,
        LocalBroker(Path(work) / "broker") as broker,
    ):
        host_env = {**base, "XDG_STATE_HOME": f"{work}/x86-state", "XDG_CACHE_HOME": f"{work}/x86-cache"}
        x86_bin = str(Path(sys.executable).parent / "edge-agent")
        x86 = collect([x86_bin, *edge_argv(str(CLIP), broker.url, skip_frames)], broker, host_env, timeout)
        inside = "/tmp/" + Path(state).name
        root_env = {**base, "XDG_STATE_HOME": f"{inside}/state", "XDG_CACHE_HOME": f"{inside}/cache"}
        args = edge_argv(f"{ROOT_SRC}/data/sample/{CLIP.name}", broker.url, skip_frames)
        arm64 = collect(chroot_command(root, args), broker, root_env, timeout)
    return compare(x86, arm64)


def main() -> None:
    """Print the comparison of the two runs as JSON; exit 1 when they differ or a cosine is <= 0.99."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the prepared arm64 root")
    parser.add_argument("--skip-frames", type=int, default=0, help="frames skipped after each processed one")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed for each run")
    options = parser.parse_args()
    problem = check_root(options.root)
    if problem:
        sys.exit(problem)
    result = run_both(options.root, options.skip_frames, options.timeout)
    print(json.dumps({"checkout": str(ROOT), "skip_frames": options.skip_frames, **asdict(result)}, indent=2))
    sys.exit(0 if result.same_ids and result.min_cosine > 0.99 else 1)


if __name__ == "__main__":
    main()
