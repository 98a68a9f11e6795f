"""The demo: a real broker, a classifier enrolled from sample photos, an edge agent on a sample clip."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from facewire.config import MqttSettings
from facewire.errors import FacewireError, SchemaError
from facewire.mqtt import Message, MqttConnection
from facewire.presentation import result_style
from facewire.schema import FaceResult
from facewire.schema.status import ServiceStatus
from facewire.topics import Topics
from facewire_console.broker import LocalBroker

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


class ResultPrinter:
    """Prints FaceResults as they arrive and counts them."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.names: Counter[str] = Counter()
        self.keys: set[tuple[str, int]] = set()
        self.changed = threading.Event()

    def __call__(self, message: Message) -> None:
        result = FaceResult.from_json(message.payload)
        self.keys.add(result.key)
        self.names[result.name] += 1
        self.changed.set()
        self.console.print(
            f"[dim]{time.strftime('%H:%M:%S', time.localtime(result.ts))}[/] {result.node} "
            f"frame {result.frame:>4} track {result.track:>3} [{result_style(result)}]{result.name:<18}[/] "
            f"{result.score:.3f}"
        )


def _service(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=output, stderr=subprocess.STDOUT)


def _online(payload: bytes) -> bool:
    try:
        return ServiceStatus.from_json(payload).state == "online"
    except SchemaError:
        return False


def wait_for_status(url: str, topic: str, timeout: float) -> None:
    """Block until ``topic`` has a retained status with state online."""
    seen = threading.Event()
    watcher = MqttConnection(MqttSettings(url=url), f"demo-watch-{os.getpid()}")
    watcher.subscribe(topic, lambda m: seen.set() if _online(m.payload) else None)
    watcher.connect()
    try:
        if not seen.wait(timeout):
            raise FacewireError(f"no online status on {topic} within {timeout:.0f}s")
    finally:
        watcher.close()


def run_demo(video: Path, gallery: Path, console: Console, extra_env: dict[str, str] | None = None) -> Counter[str]:
    """Run the whole pipeline once over ``video`` and return how often each name was seen."""
    with tempfile.TemporaryDirectory(prefix="facewire-demo-") as tmp:
        work = Path(tmp)
        broker = LocalBroker(work / "broker").start()
        env = {
            **os.environ,
            **(extra_env or {}),
            "FACEWIRE_MQTT__URL": broker.url,
            "FACEWIRE_EDGE__STATE_DIR": str(work / "state"),
        }
        printer = ResultPrinter(console)
        topics = Topics()
        listener = MqttConnection(MqttSettings(url=broker.url), f"demo-results-{os.getpid()}")
        listener.subscribe(topics.results_all(), printer)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            listener.connect()
            console.print(
                f"[bold]broker[/] {broker.url}  (watch: mosquitto_sub -p {broker.port} -t 'facewire/results/#' -v)"
            )
            console.print(f"[bold]classifier[/] enrolling {gallery}")
            processes.append(
                _service(
                    ["classifier_service", "run", "--gallery", str(gallery), "--instance", "demo"],
                    env,
                    work / "classifier.log",
                )
            )
            wait_for_status(broker.url, topics.service_status("classifier", "demo"), timeout=180)
            console.print(f"[bold]edge-agent[/] node demo-cam on {video}")
            edge = _service(
                ["edge_agent", "run", "--node-id", "demo-cam", "--source", str(video), "--once"], env, work / "edge.log"
            )
            processes.append(edge)
            edge.wait()
            while printer.changed.wait(3.0):
                printer.changed.clear()
            console.print("\n".join((work / "edge.log").read_text().strip().splitlines()[-1:]))
            if edge.returncode != 0:
                raise FacewireError(f"edge agent failed:\n{(work / 'edge.log').read_text()[-2000:]}")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)
            listener.close()
            broker.stop()
        return printer.names
