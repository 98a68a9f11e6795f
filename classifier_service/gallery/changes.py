"""The change log of a gallery shared by every replica (PostgreSQL), and the thread that follows it.

Each committed change (rows added, rows removed, rows relabelled, negatives changed) is one row of
``changes`` with a sequence number; the gallery version a replica serves is the last seq it applied
(:func:`version_of`). A replica follows through LISTEN on ``gallery_changes`` and, in case a
notification is missed (a dropped connection), polls the newest seq every ``poll_seconds``.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from classifier_service.gallery.store import Rows
from facewire.logs import kv

log = logging.getLogger(__name__)
CHANNEL = "gallery_changes"
KINDS = ("add", "remove", "relabel", "negatives")


@dataclass(frozen=True)
class Change:
    """One committed change: ``kind`` of ``ids`` (embedding row ids), by ``command`` on ``replica``."""

    seq: int
    kind: str
    ids: list[int]
    command: str
    replica: str


@dataclass(frozen=True)
class Snapshot:
    """Every enrolled row of a model as of change ``seq`` (one consistent read)."""

    seq: int
    rows: Rows


def version_of(seq: int) -> str:
    """The gallery version of a shared gallery that has applied every change up to ``seq``."""
    return f"pg-{seq}"


class ChangeLog(ABC):
    """What a shared store offers its replicas beyond :class:`GalleryStore`."""

    @abstractmethod
    def snapshot(self, model: str) -> Snapshot: ...

    @abstractmethod
    def changes(self, after: int) -> list[Change] | None:
        """Changes with seq > ``after`` in order; None when some were pruned (the caller reloads)."""

    @abstractmethod
    def rows_by_id(self, model: str, ids: list[int]) -> Rows:
        """The embedding rows with these ids that still exist, in id order."""

    @abstractmethod
    def claim(self, key: str, command: str) -> AbstractContextManager[bool]:
        """One transaction for a command: True if this replica claimed ``key`` (first to apply it; every
        store call of this thread inside the block joins the transaction), False if it was applied."""

    @abstractmethod
    def listen(self, on_change: Callable[[], None], stop: threading.Event, poll_seconds: float) -> None:
        """Call ``on_change`` after each notification, after each (re)connect and every ``poll_seconds``."""


def start_follower(
    log_: ChangeLog, on_change: Callable[[], None], poll_seconds: float, setup: Callable[[], None] = lambda: None
) -> threading.Event:
    """Follow ``log_`` on a daemon thread (which calls ``setup`` first); set the returned event to stop it."""
    stop = threading.Event()

    def run() -> None:
        setup()
        while not stop.is_set():
            try:
                log_.listen(on_change, stop, poll_seconds)
            except Exception as exc:  # the server went away: listen again (and catch up) after a pause
                log.warning(kv("gallery-follow-failed", error=f"{type(exc).__name__}: {exc}"[:200]))
                stop.wait(1.0)

    threading.Thread(target=run, name="gallery-follower", daemon=True).start()
    return stop
