"""A bounded queue drained round-robin per node, so one flooding node cannot starve the others."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Per-key FIFO queues; ``take`` interleaves keys. ``put`` blocks while ``capacity`` items wait."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queues: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0
        self._cond = threading.Condition()

    def put(self, key: str, item: T) -> None:
        with self._cond:
            while self._size >= self.capacity:
                self._cond.wait()
            self._queues.setdefault(key, deque()).append(item)
            self._size += 1
            self._cond.notify_all()

    def take(self, limit: int, wait: float, timeout: float) -> list[T]:
        """Up to ``limit`` items, round-robin over keys. Waits up to ``timeout`` for the first item,
        then up to ``wait`` more seconds for the batch to fill."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._size > 0, timeout):
                return []
            if self._size < limit and wait > 0:
                deadline = time.monotonic() + wait
                self._cond.wait_for(lambda: self._size >= limit, max(0.0, deadline - time.monotonic()))
            batch: list[T] = []
            while self._size and len(batch) < limit:
                key, queue = next(iter(self._queues.items()))
                batch.append(queue.popleft())
                self._size -= 1
                self._queues.move_to_end(key)
                if not queue:
                    del self._queues[key]
            self._cond.notify_all()
            return batch

    def depths(self) -> dict[str, int]:
        with self._cond:
            return {key: len(queue) for key, queue in self._queues.items()}

    def __len__(self) -> int:
        return self._size
