"""Read single key presses from the terminal in a thread, and always give the terminal back as it was."""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

try:  # POSIX only; elsewhere the monitor runs without keys (q via Ctrl-C)
    import termios
    import tty
except ImportError:  # pragma: no cover - Windows
    termios = None  # type: ignore[assignment]
    tty = None  # type: ignore[assignment]


class KeyReader:
    """Calls ``on_key(char)`` for each key pressed until stopped; cbreak mode, Ctrl-C still signals."""

    def __init__(self, on_key: Callable[[str], None], stream: Any = None) -> None:
        self.on_key = on_key
        self.stream = stream or sys.stdin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None

    @property
    def available(self) -> bool:
        return termios is not None and self.stream.isatty()

    def start(self) -> KeyReader:
        if not self.available:
            return self
        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._thread = threading.Thread(target=self._loop, args=(fd,), name="monitor-keys", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and restore the terminal settings saved at start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def _loop(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _w, _x = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 32)
            if not data:
                return
            for char in data.decode(errors="ignore"):
                self.on_key(char)

    def __enter__(self) -> KeyReader:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
