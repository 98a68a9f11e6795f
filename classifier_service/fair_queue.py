"""A bounded queue drained round-robin per node, so one flooding node cannot starve the others."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Per-key FIFO queues; ``take`` interleaves keys. ``put`` blocks while ``capacity`` items wait.

    ``put`` wakes the taker only when what it waits for is there (a first item, or a full batch):
    waking it on every message cost a thread switch per message while a batch fills (issue 21).
    Made for one taker (the classifier's worker) and any number of putters.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._queues: OrderedDict[str, deque[T]] = OrderedDict()
        self._size = 0
        lock = threading.Lock()
        self._filled = threading.Condition(lock)  # the taker waits here
        self._room = threading.Condition(lock)  # putters wait here while the queue is full
        self._wanted = 1  # the size the waiting taker needs to go on

    def put(self, key: str, item: T) -> None:
        with self._room:
            while self._size >= self.capacity:
                self._room.wait()
            self._queues.setdefault(key, deque()).append(item)
            self._size += 1
            if self._size >= self._wanted:
                self._filled.notify()

    def take(self, limit: int, wait: float, timeout: float) -> list[T]:
        """Up to ``limit`` items, round-robin over keys. Waits up to ``timeout`` for the first item,
        then up to ``wait`` more seconds for the batch to fill."""
        with self._filled:
            self._wanted = 1
            if not self._filled.wait_for(lambda: self._size > 0, timeout):
                return []
            if self._size < limit and wait > 0:
                self._wanted = limit
                deadline = time.monotonic() + wait
                self._filled.wait_for(lambda: self._size >= limit, max(0.0, deadline - time.monotonic()))
                self._wanted = 1
            batch: list[T] = []
            while self._size and len(batch) < limit:
                key, queue = next(iter(self._queues.items()))
                batch.append(queue.popleft())
                self._size -= 1
                self._queues.move_to_end(key)
                if not queue:
                    del self._queues[key]
            self._room.notify_all()
            return batch

    def depths(self) -> dict[str, int]:
        with self._filled:
            return {key: len(queue) for key, queue in self._queues.items()}

    def __len__(self) -> int:
        return self._size
