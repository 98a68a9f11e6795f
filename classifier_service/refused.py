"""Results the broker refused (PUBACK reason >= 0x80, e.g. an ACL without the classifier's results line),
published again until the broker takes them.

A refused result is not a delivery, so its embedding stays unacknowledged (issue 18). Left at that, each one
holds one of the broker's receive-maximum slots for this client (``classifier.queue_max``) until the client
reconnects: a misconfigured ACL wedged the classifier after that many refusals, and fixing the ACL (SIGHUP:
mosquitto keeps its clients connected) did not unwedge it. The refused results are tried again together
after 1 s, then after twice as long while the broker still refuses (at most a minute), for as long as the
service runs; the publish the broker takes acknowledges the embedding.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from facewire.schema import FaceResult

FIRST_DELAY = 1.0
LONGEST_DELAY = 60.0


class RefusedResults:
    """Refused results by (node, seq) with the acknowledgement of their embedding; thread-safe."""

    def __init__(self, first: float = FIRST_DELAY, longest: float = LONGEST_DELAY) -> None:
        self.first, self.longest = first, longest
        self._waiting: dict[tuple[str, int], tuple[FaceResult, Callable[[], None]]] = {}
        self._delay = first
        self._due: float | None = None
        self._lock = threading.Lock()

    def add(self, result: FaceResult, ack: Callable[[], None], now: float | None = None) -> None:
        """Keep ``result`` (a redelivered embedding's answer replaces its earlier copy) for the next round."""
        with self._lock:
            self._waiting[result.key] = (result, ack)
            if self._due is None:
                self._due = (time.monotonic() if now is None else now) + self._delay

    def due(self, now: float | None = None) -> list[tuple[FaceResult, Callable[[], None]]]:
        """Every kept result once the round is due (the next round waits twice as long), else nothing."""
        with self._lock:
            if self._due is None or (time.monotonic() if now is None else now) < self._due:
                return []
            ready = list(self._waiting.values())
            self._waiting.clear()
            self._due = None
            self._delay = min(self._delay * 2, self.longest)
            return ready

    def taken(self) -> None:
        """The broker took a result again: the next refusal is retried after the first delay."""
        with self._lock:
            self._delay = self.first

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
