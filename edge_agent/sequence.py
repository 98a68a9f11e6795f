"""A per-node sequence number that keeps increasing across restarts of the agent."""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 1000


class SequenceCounter:
    """Hands out increasing integers; reserves blocks of ``BLOCK`` in a state file (crash-safe, few writes)."""

    def __init__(self, state_file: Path) -> None:
        self._path = state_file
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            start = int(self._path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            start = 0
        self._next = start
        self._reserved = start
        self._reserve()

    def _reserve(self) -> None:
        self._reserved = self._next + BLOCK
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(f"{self._reserved}\n")
        os.replace(tmp, self._path)

    def __call__(self) -> int:
        value = self._next
        self._next += 1
        if self._next >= self._reserved:
            self._reserve()
        return value
