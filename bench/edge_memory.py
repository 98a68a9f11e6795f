"""Memory footprint of the edge agent: peak and typical RSS of a real ``edge-agent run`` process.

The agent runs on a video file against a real mosquitto, once with an empty
model cache (the first start on a new device also converts the model) and
once with the converted model cached (every later start). Peak RSS is the
kernel's own figure for the finished child (``wait4`` rusage ``ru_maxrss``);
the typical RSS is the median of ``/proc/<pid>/status`` VmRSS samples taken
while it runs::

    python -m bench.edge_memory --python /path/to/edge-venv/bin/python

``--python`` picks the interpreter (and so the installed packages) the agent
runs with, e.g. a virtualenv made with ``pip install ".[edge]"``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import write_json
from facewire_console.broker import LocalBroker

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = ROOT / "data" / "sample" / "short_hamilton_clip.mp4"


def vm_rss_kib(pid: int) -> int | None:
    """Current resident set size of ``pid`` in KiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def run_agent(python: str, video: Path, url: str, cache: Path, state: Path) -> dict[str, Any]:
    """Run one edge agent to the end of ``video``; its peak and median RSS in MiB and its wall time."""
    env = {
        **os.environ,
        "FACEWIRE_MODEL__CACHE_DIR": str(cache),
        "FACEWIRE_EDGE__STATE_DIR": str(state),
    }
    command = [python, "-m", "edge_agent", "run", "--once", "--node-id", "memory", "--source", str(video)]
    started = time.monotonic()
    process = subprocess.Popen([*command, "--broker", url], env=env, stderr=subprocess.PIPE, text=True)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            rss = vm_rss_kib(process.pid)
            if rss is not None:
                samples.append(rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    stop.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    output = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"edge agent failed ({process.returncode}): {output[-2000:]}")
    return {
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "median_rss_mib": round(statistics.median(samples) / 1024, 1) if samples else None,
        "seconds": round(time.monotonic() - started, 1),
        "summary": output.strip().splitlines()[-1] if output.strip() else "",
    }


def measure(python: str, video: Path) -> dict[str, Any]:
    """A cold start (empty model cache) and a warm start of the edge agent on ``video``."""
    with tempfile.TemporaryDirectory(prefix="facewire-edge-memory-") as tmp:
        work = Path(tmp)
        with LocalBroker(work / "broker") as broker:
            cold = run_agent(python, video, broker.url, work / "cache", work / "state")
            warm = run_agent(python, video, broker.url, work / "cache", work / "state")
    return {
        "python": python,
        "video": str(video.relative_to(ROOT) if video.is_relative_to(ROOT) else video),
        "cold": cold,
        "warm": warm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter the edge agent runs with")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    args = parser.parse_args()
    result = measure(args.python, args.video.resolve())
    path = write_json("edge_memory", result)
    for label in ("cold", "warm"):
        run = result[label]
        print(
            f"{label}: peak RSS {run['peak_rss_mib']} MiB, median {run['median_rss_mib']} MiB, "
            f"{run['seconds']} s — {run['summary']}"
        )
    print(f"written {path}")


if __name__ == "__main__":
    main()
