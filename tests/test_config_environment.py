"""Loading configuration reads the environment and never changes it (safe beside other threads)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from facewire.config import load_settings


def test_a_config_file_is_read_without_touching_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "facewire.toml"
    config.write_text('[mqtt]\nurl = "mqtt://broker.example:1884"\n')
    before = dict(os.environ)
    assert load_settings(config).mqtt.url == "mqtt://broker.example:1884"
    assert dict(os.environ) == before


def test_a_thread_without_a_file_never_sees_another_threads_file(tmp_path: Path) -> None:
    """Before, load_settings set FACEWIRE_CONFIG for the time of the load: other threads read that file (82 of 300)."""
    config = tmp_path / "a.toml"
    config.write_text('[mqtt]\nurl = "mqtt://from-file:1883"\n')
    default = load_settings().mqtt.url
    assert default != "mqtt://from-file:1883"
    stop = threading.Event()
    seen: list[str] = []

    def with_file() -> None:
        while not stop.is_set():
            load_settings(config)

    loader = threading.Thread(target=with_file)
    loader.start()
    try:
        seen = [load_settings().mqtt.url for _ in range(300)]
    finally:
        stop.set()
        loader.join()
    assert set(seen) == {default}
