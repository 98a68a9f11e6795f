"""Structured, quiet-by-default logging: ``event key=value ...`` lines on stderr."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbosity: int = 0, json_lines: bool = False) -> None:
    """Warnings only by default; ``-v`` adds info, ``-vv`` debug."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter('{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
        )
    else:
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(name)s %(message)s", force=True)
    logging.getLogger("paho").setLevel(max(level, logging.WARNING))


def moment(unix_time: float) -> str:
    """``unix_time`` as a UTC ISO 8601 time to the millisecond, for a log line (kv would round a float)."""
    return datetime.fromtimestamp(unix_time, timezone.utc).isoformat(timespec="milliseconds")


def kv(event: str, **fields: Any) -> str:
    """Format one structured log line: the event name followed by sorted key=value pairs."""
    parts = [event] + [f"{key}={_value(value)}" for key, value in sorted(fields.items())]
    return " ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return f'"{text}"' if " " in text else text
