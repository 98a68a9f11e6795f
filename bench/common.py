"""Shared benchmark helpers: machine description, JSON output, result collection through a broker."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from facewire.config import MqttSettings
from facewire.mqtt import Message, MqttConnection

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Cores, CPU model and Python version of this machine."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def output_dir() -> Path | None:
    """$FACEWIRE_BENCH_DIR: where results/ and BENCHMARKS.md go instead of the repository (tests use it)."""
    value = os.environ.get("FACEWIRE_BENCH_DIR")
    return Path(value) if value else None


def write_json(name: str, data: dict[str, Any]) -> Path:
    base = output_dir()
    folder = base / "results" if base else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path


class Counter:
    """Counts messages on a topic filter until ``target`` arrive."""

    def __init__(self, url: str, topic: str, target: int, bulk_reads: bool = True) -> None:
        self.target = target
        self.count = 0
        self.done = threading.Event()
        self.first = 0.0
        self.last = 0.0
        settings = MqttSettings(url=url, bulk_reads=bulk_reads)
        self.connection = MqttConnection(settings, f"bench-counter-{id(self)}")
        self.connection.subscribe(topic, self._on)

    def _on(self, _message: Message) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.count += 1
        self.last = now
        if self.count >= self.target:
            self.done.set()


BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def machine_line(command: str) -> str:
    """The provenance line printed above every table: command, date, cores, CPU model, Python."""
    info = machine()
    return (
        f"Command: `{command}` · {info['date']} · {info['cores']} cores, {info['cpu'] or 'unknown CPU'},"
        f" Python {info['python']}"
    )


def update_section(name: str, body: str, path: Path | None = None) -> Path:
    """Replace the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (appended if absent).

    Hand-written readings outside the markers are kept.
    """
    path = path or ((output_dir() or BENCHMARKS_MD.parent) / BENCHMARKS_MD.name)
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def table(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
