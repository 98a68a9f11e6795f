"""Options every facewire command shares (config file, broker URL, verbosity) and error handling."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from facewire.config import Settings, load_settings
from facewire.errors import ConfigError, FacewireError
from facewire.logs import setup_logging

F = TypeVar("F", bound=Callable[..., Any])


TLS_FLAGS = {"tls_ca": "CA certificate", "tls_cert": "client certificate", "tls_key": "client key"}


def _remember_tls(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None and param.name:
        ctx.meta.setdefault("facewire.tls", {})[param.name] = value


def common_options(func: F) -> F:
    """--config, --broker, --verbose and --tls-ca/--tls-cert/--tls-key (for mqtts:// URLs) on a command."""
    for name, what in reversed(TLS_FLAGS.items()):
        func = click.option(
            f"--{name.replace('_', '-')}",
            name,
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            default=None,
            expose_value=False,
            callback=_remember_tls,
            help=f"TLS {what} (PEM) for an mqtts:// broker.",
        )(func)
    func = click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")(func)
    func = click.option("--broker", "broker_url", default=None, help="Broker URL, e.g. mqtt://127.0.0.1:1883.")(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML config file (default: $FACEWIRE_CONFIG).",
    )(func)
    return func


def settings_from(
    config_file: Path | None, broker_url: str | None, verbose: int, **sections: dict[str, Any]
) -> Settings:
    """Set up logging and load settings with CLI overrides on top."""
    setup_logging(verbose)
    context = click.get_current_context(silent=True)
    tls = context.meta.get("facewire.tls", {}) if context is not None else {}
    return load_settings(config_file, {"mqtt": {"url": broker_url, **tls}, **sections})


USAGE_ERROR = 2  # click's code for bad arguments; also a configuration that cannot work (ConfigError)
RUNTIME_ERROR = 1  # the broker, a model, a file or a peer failed


def fail_cleanly(func: F) -> F:
    """Turn FacewireError into a one-line message, not a traceback: exit 2 for a ConfigError (like click's
    usage errors), 1 for every other failure."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FacewireError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(USAGE_ERROR if isinstance(exc, ConfigError) else RUNTIME_ERROR)

    return wrapper  # type: ignore[return-value]


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so loops finish their work and exit cleanly."""
    stop = threading.Event()

    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
