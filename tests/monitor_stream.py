"""A replayed, demo-like stream for the monitor tests: results, statuses, an alert, a dead letter, stats.

Published with a real MqttConnection to a real broker; :func:`expected` says
what a correct monitor must make of it (computed from the stream, not typed in).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facewire.config import MqttSettings
from facewire.mqtt import MqttConnection
from facewire.schema import Alert, DeadLetter, Evidence, FaceResult
from facewire.schema.stats import GridPoint, OperatingPoint, ThresholdReport
from facewire.schema.status import NodeStatus, ServiceStatus
from facewire.topics import Topics

TOPICS = Topics()
PEOPLE = ("Lin_Manuel_Miranda", "Alex_Lacamoire", "unknown")
NODES = ("cam-front", "cam-back")
THRESHOLD = 0.45


@dataclass
class Stream:
    """Everything one replay publishes, in order."""

    results: list[FaceResult] = field(default_factory=list)
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)


def make_results(count: int, now: float, first_seq: int = 0) -> list[FaceResult]:
    """Deterministic results on two nodes: known, low-confidence and unknown faces, rising latencies."""
    results = []
    for index in range(count):
        name = PEOPLE[index % 3]
        known = name != "unknown"
        score = (0.62 if index % 2 else 0.47) if known else 0.21
        ts = now - 2.0 + index * 0.01
        results.append(
            FaceResult(
                node=NODES[index % 2],
                seq=first_seq + index,
                track=index // 4,
                frame=index,
                ts=ts,
                name=name,
                score=score,
                known=known,
                threshold=THRESHOLD,
                model="sface-2021dec",
                gallery_version="g1",
                classified_at=ts + 0.010 + 0.001 * index,
                latency_ms=3.0,
            )
        )
    return results


def make_stream(now: float, count: int = 12) -> Stream:
    """Statuses (retained), results with one redelivered duplicate, an alert, a dead letter and stats."""
    stream = Stream(results=make_results(count, now))
    for node, fps in zip(NODES, (7.5, 4.0), strict=True):
        status = NodeStatus(node, "online", now, fps=fps, faces_per_s=fps / 3, model="sface")
        stream.messages.append((TOPICS.node_status(node), status.to_json(), True))
    stream.messages.append((TOPICS.node_status("cam-old"), NodeStatus("cam-old", "offline").to_json(), True))
    classifier = {"people": 2, "gallery_size": 2, "threshold": THRESHOLD, "queue": {}}
    stream.messages.append(
        (TOPICS.service_status("classifier", "c1"), ServiceStatus("c1", "online", details=classifier).to_json(), True)
    )
    stats = ThresholdReport(
        ts=now,
        target_far=1e-3,
        gallery_version="g1",
        model="sface",
        counts={},
        recommended=OperatingPoint(0.48, 0.001, 0.05),
        eer=None,
        grid=tuple(GridPoint(t / 100, 0.1 / t, t / 1000, None) for t in range(40, 51)),
    )
    stream.messages.append((TOPICS.stats_thresholds(), stats.to_json(), True))
    for result in [*stream.results, stream.results[3]]:  # the last one is a QoS-1 redelivery
        stream.messages.append((TOPICS.results(result.node), result.to_json(), False))
    unknown = [r for r in stream.results if not r.known][:3]
    first = unknown[0]
    alert = Alert(  # shaped like alert_service's unknown-face rule: the subject of an unknown alert is its node
        id=f"unknown:{first.node}:{first.node}:{first.seq}",
        rule="unknown",
        node=first.node,
        subject=first.node,
        message=f"unknown face 3x within 30s on {first.node}",
        ts=now,
        raised_at=now,
        evidence=tuple(Evidence(r.node, r.seq, r.track, r.name, r.score, r.ts) for r in unknown),
    )
    stream.messages.append((TOPICS.alerts(alert.node), alert.to_json(), False))
    letter = DeadLetter("emb-length", "", "facewire/embeddings/cam-front", b"\x81")
    stream.messages.append((TOPICS.deadletter("classifier"), letter.to_json("classifier"), False))
    return stream


def publish(url: str, messages: list[tuple[str, bytes, bool]], client_id: str = "test-replay") -> None:
    """Publish ``messages`` with a real connection and wait for the broker's acks."""
    connection = MqttConnection(MqttSettings(url=url), f"{client_id}-{os.getpid()}")
    connection.connect()
    try:
        infos = [connection.publish(topic, payload, retain=retain) for topic, payload, retain in messages]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        connection.close()


def expected(stream: Stream) -> dict[str, object]:
    """What the snapshot must say about ``stream``."""
    names = Counter(r.name for r in stream.results)
    latencies = sorted((r.classified_at - r.ts) * 1000 for r in stream.results)
    return {
        "by_name": dict(sorted(names.items())),
        "results": len(stream.results),
        "latency_p50": latencies[(len(latencies) + 1) // 2 - 1],
    }


def facewire_command() -> list[str]:
    """The installed ``facewire`` console script of this environment."""
    script = Path(sys.executable).parent / "facewire"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from facewire_console.cli import main; main()"]


class Tmux:
    """A private tmux server (own socket) running one command in an 80x24 window."""

    def __init__(self, workdir: Path, name: str = "monitor") -> None:
        self.socket = str(workdir / "tmux.sock")
        self.name = name
        self.rc_file = workdir / "rc"

    @staticmethod
    def available() -> bool:
        return shutil.which("tmux") is not None

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=10
        )

    def start(self, command: list[str], width: int = 80, height: int = 24) -> Tmux:
        tty = self.rc_file.parent
        line = (
            f"stty -g > '{tty / 'stty.before'}'; "
            + " ".join(f"'{part}'" for part in command)
            + f"; echo $? > '{tty / 'rc.tmp'}'; stty -g > '{tty / 'stty.after'}'"
            + f"; mv '{tty / 'rc.tmp'}' '{self.rc_file}'"
        )
        result = self._tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), line)
        if result.returncode != 0:
            raise RuntimeError(f"tmux failed: {result.stderr}")
        return self

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name).stdout

    def wait_for(self, predicate: object, timeout: float) -> str:
        """Wait until ``predicate(screen)`` holds; return the last screen either way."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        text = self.screen()
        while time.monotonic() < deadline and not predicate(text):
            time.sleep(0.2)
            text = self.screen()
        return text

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def exit_code(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rc_file.exists() and self.rc_file.read_text().strip():
                return int(self.rc_file.read_text())
            time.sleep(0.1)
        return None

    def terminal_restored(self) -> bool:
        """The terminal settings after the command exited equal those before it started."""
        before, after = (self.rc_file.parent / f"stty.{when}" for when in ("before", "after"))
        return before.read_text() == after.read_text() != ""

    def kill(self) -> None:
        self._tmux("kill-server")
