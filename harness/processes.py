"""Real processes and MQTT traffic for tests and benchmarks: collect messages, run CLI processes, find data."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from facewire.config import MqttSettings
from facewire.mqtt import Message, MqttConnection

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def shared_data_dir() -> Path | None:
    """../shared/data (or $FACEWIRE_SHARED_DATA) when present."""
    candidate = Path(os.environ.get("FACEWIRE_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@dataclass
class Collector:
    """A real MQTT subscriber that records (topic, payload) pairs."""

    url: str
    topics: list[str]
    settings: MqttSettings | None = None  # credentials and TLS (default: anonymous on ``url``)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connection: MqttConnection | None = None

    def start(self) -> Collector:
        settings = self.settings or MqttSettings(url=self.url)
        self._connection = MqttConnection(settings, f"test-collector-{id(self)}")
        for topic in self.topics:
            self._connection.subscribe(topic, self._record)
        self._connection.connect()
        time.sleep(0.2)  # let the SUBACK land before the test publishes
        return self

    def _record(self, message: Message) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def matching(self, predicate: Callable[[str], bool]) -> list[tuple[str, bytes]]:
        with self._lock:
            return [(t, p) for t, p in self.messages if predicate(t)]

    def wait_for(self, predicate: Callable[[str], bool], count: int, timeout: float) -> list[tuple[str, bytes]]:
        """Wait until ``count`` messages match ``predicate`` (returns what arrived either way)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(predicate)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.matching(predicate)

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()


def start_module(module: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m module args`` as a real process, output into ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def run_module(
    module: str, args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` to completion and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def status_online(payload: bytes) -> bool:
    return b'"state": "online"' in payload or b'"state":"online"' in payload


class RunningClassifier:
    """A real ``classifier-service run`` process, ready (subscribed) once ``start`` returns."""

    def __init__(
        self,
        url: str,
        gallery: Path,
        workdir: Path,
        instance: str = "test",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        watch: MqttSettings | None = None,
    ):
        self.url = url
        self.watch = watch  # how to watch its status (default: anonymous on ``url``)
        self.gallery = gallery
        self.workdir = workdir
        self.instance = instance
        self.extra = extra or []
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"classifier-{self.instance}.log"

    @property
    def store_dir(self) -> Path:
        """Where this replica's gallery store lives (the workdir, so tests never share a store)."""
        return self.workdir / "gallery-store"

    def start(self, timeout: float = 120) -> RunningClassifier:
        status = f"facewire/services/classifier/{self.instance}/status"
        watcher = Collector(self.url, [status], self.watch).start()
        args = ["run", "--gallery", str(self.gallery), "--instance", self.instance, *self.extra]
        env = {"FACEWIRE_MQTT__URL": self.url, "FACEWIRE_GALLERY__STORE_DIR": str(self.store_dir), **self.env}
        self.process = start_module("classifier_service", args, env, self.log)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if any(status_online(p) for _t, p in watcher.matching(lambda t: t == status)):
                    return self
                if self.process.poll() is not None:
                    raise RuntimeError(f"classifier exited early:\n{self.log.read_text()}")
                time.sleep(0.1)
            raise TimeoutError(f"classifier not ready:\n{self.log.read_text()}")
        finally:
            watcher.stop()

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.terminate()
        return self.process.wait(30)
