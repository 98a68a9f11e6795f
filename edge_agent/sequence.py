"""A per-node sequence number that keeps increasing across restarts of the agent, and across a lost state file.

(node, seq) is a face's identity everywhere downstream: the recorder stores each once, the classifier
answers a redelivered seq from memory. A seq handed out twice would drop the second face or give it the
first one's name, so the counter never goes back:

* the reservation (``BLOCK`` values ahead) is written to a temporary file, fsynced, renamed over the
  state file and the folder fsynced, with a CRC of the value, so a crash or power loss leaves the old or
  the new reservation, never an empty or half-written one;
* a state file that is nevertheless empty, truncated or corrupt is not read as 0: the counter recovers at
  the wall-clock floor, ``RECOVERY_RATE`` values per second since the Unix epoch, which is above any seq
  a node handed out below that rate since it was set up. Only a missing file (a new node) starts at 0.
"""

from __future__ import annotations

import logging
import os
import re
import time
import zlib
from pathlib import Path

from facewire.logs import kv

log = logging.getLogger(__name__)

BLOCK = 1000
RECOVERY_RATE = 1000  # seqs per second: a node publishing faster than this on average could be overtaken
STATE = re.compile(r"(?P<value>[0-9]{1,19})(?: (?P<crc>[0-9]{1,10}))?\n")


def parse_state(text: str) -> int | None:
    """The reserved value in a state file's text, or None if the text is not a whole, intact state."""
    match = STATE.fullmatch(text)
    if match is None:
        return None
    value = match["value"]
    if match["crc"] is not None and int(match["crc"]) != zlib.crc32(value.encode()):
        return None
    return int(value)


def recovery_floor() -> int:
    """Where a counter whose state was lost starts again: above any seq handed out at ``RECOVERY_RATE``."""
    return int(time.time() * RECOVERY_RATE)


class SequenceCounter:
    """Hands out increasing integers; reserves blocks of ``BLOCK`` in a state file (crash-safe, few writes)."""

    def __init__(self, state_file: Path) -> None:
        self._path = state_file
        self._path.parent.mkdir(parents=True, exist_ok=True)
        start = self._read()
        self._next = start
        self._reserved = start
        self._reserve()

    def _read(self) -> int:
        try:
            text = self._path.read_bytes().decode("ascii")
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError):
            text = ""
        value = parse_state(text)
        if value is not None:
            return value
        floor = recovery_floor()
        log.warning(kv("sequence-state-corrupt", path=str(self._path), content=text[:40], recovered_at=floor))
        return floor

    def _reserve(self) -> None:
        self._reserved = self._next + BLOCK
        value = str(self._reserved)
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w", encoding="ascii") as file:
            file.write(f"{value} {zlib.crc32(value.encode())}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self._path)
        folder = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def __call__(self) -> int:
        value = self._next
        self._next += 1
        if self._next >= self._reserved:
            self._reserve()
        return value
