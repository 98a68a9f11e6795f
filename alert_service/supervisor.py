"""``alert-service run all``: every subscriber in its own process, restarted with back-off when it dies."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from facewire.logs import kv

log = logging.getLogger(__name__)
ROLES = ("recorder", "alerts", "stats", "nodes")
MAX_BACKOFF = 60.0


@dataclass
class Child:
    role: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff: float = 1.0
    started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "alert_service", "run", self.role, *self.args])
        self.started = time.monotonic()


def supervise(args: list[str], stop: threading.Event, roles: tuple[str, ...] = ROLES) -> None:
    """Start one process per role; restart a crashed one (back-off doubling to 60 s); SIGTERM all on stop."""
    children = [Child(role, args) for role in roles]
    for child in children:
        child.start()
    restart_at: dict[str, float] = {}
    while not stop.wait(0.5):
        for child in children:
            assert child.process is not None
            code = child.process.poll()
            if code is None:
                if time.monotonic() - child.started > 60.0:
                    child.backoff = 1.0
                continue
            if child.role not in restart_at:
                log.warning(kv("subscriber-exited", role=child.role, code=code, restart_in=child.backoff))
                restart_at[child.role] = time.monotonic() + child.backoff
                child.backoff = min(child.backoff * 2, MAX_BACKOFF)
            elif time.monotonic() >= restart_at[child.role]:
                del restart_at[child.role]
                child.restarts += 1
                child.start()
    for child in children:
        if child.process is not None and child.process.poll() is None:
            child.process.terminate()
    for child in children:
        if child.process is not None:
            try:
                child.process.wait(15)
            except subprocess.TimeoutExpired:
                child.process.kill()
