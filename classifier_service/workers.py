"""Worker threads that never die silently: a crash is logged and reported, so the process can exit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from facewire.logs import kv

log = logging.getLogger(__name__)


def guarded_thread(name: str, target: Callable[[], None], on_death: Callable[[str], None]) -> threading.Thread:
    """A daemon thread running ``target``; if it raises, ``on_death(name)`` is called (the process then
    stops with a non-zero exit and an offline status, so compose or systemd restarts it)."""

    def run() -> None:
        try:
            target()
        except BaseException:
            log.critical(kv("worker-died", worker=name), exc_info=True)
            on_death(name)

    return threading.Thread(target=run, name=name, daemon=True)
