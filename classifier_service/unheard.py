"""Results the broker took with no subscriber for them, kept to be published again after a back-off.

mosquitto 2.0 does not restore a shared subscription after a restart until its subscriber reconnects,
and answers a publish in between with PUBACK 0x10 "No matching subscribers". A result published then
(the recorder, alert and forward services subscribe in ``$share`` groups) reached no one. The service
keeps each such result here and re-publishes it after 1, 2, 4, 8 and 15 s; one still unheard after
that is given up and counted (nobody subscribes to results at all, or not for half a minute).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field

from facewire.schema import FaceResult

DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


@dataclass(frozen=True, order=True)
class Retry:
    """One unheard result, its attempt number (0 for the first re-publish) and when it is due."""

    due: float
    order: int  # ties on ``due`` keep the order results were added
    result: FaceResult = field(compare=False)
    attempt: int = field(compare=False)


class UnheardResults:
    """A thread-safe list of results waiting to be published again; ``given_up`` counts the abandoned."""

    def __init__(self, delays: tuple[float, ...] = DELAYS) -> None:
        self.delays = delays
        self.given_up = 0
        self._waiting: list[Retry] = []  # a heap by due time: the worker looks at it on every pass
        self._added = itertools.count()
        self._lock = threading.Lock()

    def add(self, result: FaceResult, attempt: int = 0, now: float | None = None) -> bool:
        """Keep ``result`` for its next re-publish; False (and counted given up) once attempts run out."""
        with self._lock:
            if attempt >= len(self.delays):
                self.given_up += 1
                return False
            moment = time.monotonic() if now is None else now
            heapq.heappush(self._waiting, Retry(moment + self.delays[attempt], next(self._added), result, attempt))
            return True

    def due(self, now: float | None = None) -> list[Retry]:
        """Take the retries whose time has come, in the order they fell due."""
        moment = time.monotonic() if now is None else now
        ready = []
        with self._lock:
            while self._waiting and self._waiting[0].due <= moment:
                ready.append(heapq.heappop(self._waiting))
        return ready

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)
