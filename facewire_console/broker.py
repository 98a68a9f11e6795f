"""Start a real mosquitto with broker/mosquitto.conf on a free loopback port.

Used by the integration tests, the demo and ``facewire broker run``. Only the
listener port and the persistence folder are rewritten; every other option is
the shipped configuration.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from facewire.errors import BrokerError

BROKER_CONF = Path(__file__).resolve().parent.parent / "broker" / "mosquitto.conf"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(base: str, port: int, data_dir: Path, dev_listener: bool = True) -> str:
    """The shipped config with persistence in ``data_dir`` and the development listener on ``port``.

    ``dev_listener=False``: a config without one (``facewire broker secure-config``) keeps its listeners.
    """
    text = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {data_dir}/", base)
    if dev_listener:
        text = re.sub(r"(?m)^listener \d+ 127\.0\.0\.1$", f"listener {port} 127.0.0.1", text)
        if f"listener {port} 127.0.0.1" not in text:
            raise BrokerError("broker config has no 'listener <port> 127.0.0.1' development listener")
    # Started as root, mosquitto would switch to the 'mosquitto' user and lose
    # access to data_dir; run it as whoever started it instead.
    return text + f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"


@dataclass
class LocalBroker:
    """A mosquitto process on 127.0.0.1:``port`` whose data lives in ``workdir``.

    With ``dev_listener=False`` the config's own listeners are kept and ``port`` is the one to wait for.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    config: Path = BROKER_CONF
    dev_listener: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Start mosquitto and wait until it accepts TCP connections."""
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if binary is None:
            raise BrokerError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
        data_dir = self.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(render_config(self.config.read_text(), self.port, data_dir, self.dev_listener))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop mosquitto gracefully (SIGTERM saves its persistence file)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Kill mosquitto abruptly, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
