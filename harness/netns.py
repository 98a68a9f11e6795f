"""A site broker bridged to a central broker over a link that can be cut, for the bridge fault tests.

With ``ip netns`` (root): each broker runs in its own network namespace and the two are joined by one
veth pair, the WAN; the test's namespace reaches each broker over its own veth pair, its LAN, which is
never cut. The site namespace has no route to the centre's LAN, so the bridge's only path is the WAN:
cutting it (both ends down) is a cable pulled, and healing it (both ends up) brings the same TCP path back.
Where namespaces are refused, :class:`RestartedCentre` stands in: both brokers on loopback, and the
cut is the central broker stopped (SIGTERM, persistence written) and started again on its port and data.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from facewire.errors import BrokerError
from facewire_console.broker import BROKER_CONF, LocalBroker, free_port, render_config

PORT = 1883


class BridgedBrokers(Protocol):
    """A site broker whose bridge reaches a centre broker, and a way to break the path between them."""

    site_url: str
    centre_url: str
    centre_log: Path  # the central mosquitto's log: one "New bridge connected" line per bridge connection
    fault: str

    def cut(self) -> None: ...

    def heal(self) -> None: ...

    def close(self) -> None: ...


def ip(*args: str, netns: str | None = None) -> None:
    """Run ``ip [-n NETNS] ARGS`` and raise on failure (with its error message)."""
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise BrokerError(f"{' '.join(command)}: {done.stderr.strip()}")


def wait_listening(host: str, port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    """Wait until ``host:port`` accepts TCP connections, or raise with mosquitto's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"mosquitto exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"mosquitto did not listen on {host}:{port} within {timeout}s")


def subnet(index: int) -> tuple[str, str]:
    """The two host addresses of the ``index``-th /30 of 198.18.0.0/15 (RFC 2544: never a real network)."""
    base = ipaddress.IPv4Address("198.18.0.0") + 4 * (index % 32768)
    return str(base + 1), str(base + 2)


class NetnsBroker:
    """broker/mosquitto.conf (plus ``extra``) run by mosquitto inside network namespace ``netns``, every address."""

    def __init__(self, netns: str, host: str, workdir: Path, extra: str = "") -> None:
        self.netns, self.host, self.workdir, self.extra = netns, host, workdir, extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{PORT}"

    def start(self) -> NetnsBroker:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        text = render_config(BROKER_CONF.read_text(), PORT, data).replace(
            f"listener {PORT} 127.0.0.1", f"listener {PORT}"
        )
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(text + self.extra)
        log = self.workdir / "mosquitto.log"
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with log.open("ab") as output:
            command = ["ip", "netns", "exec", self.netns, binary, "-c", str(conf)]
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        wait_listening(self.host, PORT, self.process, log)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class NetnsSites:
    """Site and centre brokers in two namespaces joined by a veth WAN; see the module docstring."""

    fault = "netns link cut"

    def __init__(self, workdir: Path, site_conf: Callable[[str], str]) -> None:
        """``site_conf(centre_wan_url)``: the bridge snippet appended to the site broker's configuration."""
        tag = os.getpid() % 10000
        wan, site_lan, centre_lan = (subnet(3 * tag + i) for i in range(3))
        self.site_ns, self.centre_ns = f"fw-site-{tag}", f"fw-centre-{tag}"
        self.wan = (f"fws{tag}w", f"fwc{tag}w")  # (site end, centre end)
        self._created: list[str] = []
        try:
            self._link(self.wan, (self.site_ns, self.centre_ns), wan)
            self._link((f"fws{tag}l", f"fws{tag}h"), (self.site_ns, None), site_lan)
            self._link((f"fwc{tag}l", f"fwc{tag}h"), (self.centre_ns, None), centre_lan)
            self.centre = NetnsBroker(self.centre_ns, centre_lan[0], workdir / "centre").start()
            bridge = site_conf(f"mqtt://{wan[1]}:{PORT}")
            self.site = NetnsBroker(self.site_ns, site_lan[0], workdir / "site", bridge).start()
        except BaseException:
            self.close()
            raise
        self.site_url, self.centre_url = self.site.url, self.centre.url
        self.centre_log = workdir / "centre" / "mosquitto.log"

    def _link(self, ends: tuple[str, str], spaces: tuple[str | None, str | None], hosts: tuple[str, str]) -> None:
        """A veth pair: each end in its namespace (None: the test's own) with its /30 address, up."""
        for space in spaces:
            if space is not None and space not in self._created:
                ip("netns", "add", space)
                self._created.append(space)
                ip("link", "set", "lo", "up", netns=space)
        ip("link", "add", ends[0], "type", "veth", "peer", "name", ends[1])
        self._created.append(f"link:{ends[1]}")
        for end, space, host in zip(ends, spaces, hosts, strict=True):
            if space is not None:
                ip("link", "set", end, "netns", space)
            ip("addr", "add", f"{host}/30", "dev", end, netns=space)
            ip("link", "set", end, "up", netns=space)

    def _wan(self, state: str) -> None:
        ip("link", "set", self.wan[0], state, netns=self.site_ns)
        ip("link", "set", self.wan[1], state, netns=self.centre_ns)

    def cut(self) -> None:
        self._wan("down")

    def heal(self) -> None:
        self._wan("up")

    def close(self) -> None:
        for broker in (getattr(self, "site", None), getattr(self, "centre", None)):
            if broker is not None:
                broker.stop()
        for item in reversed(self._created):  # deleting a namespace deletes the veth ends inside it
            kind, _, name = item.rpartition(":")
            command = ["ip", "link", "del", name] if kind == "link" else ["ip", "netns", "del", name]
            subprocess.run(command, capture_output=True, timeout=10)


class RestartedCentre:
    """The fallback without namespaces: both brokers on loopback; the cut stops the centre, the heal restarts it."""

    def __init__(self, workdir: Path, site_conf: Callable[[str], str], why: str) -> None:
        self.fault = f"centre broker stopped and restarted ({why})"
        self.centre = LocalBroker(workdir / "centre").start()
        bridged = workdir / "site.conf"
        bridged.write_text(BROKER_CONF.read_text() + "\n" + site_conf(self.centre.url))
        try:
            self.site = LocalBroker(workdir / "site", port=free_port(), config=bridged).start()
        except BaseException:
            self.centre.stop()
            raise
        self.site_url, self.centre_url = self.site.url, self.centre.url
        self.centre_log = self.centre.log_path

    def cut(self) -> None:
        self.centre.stop()

    def heal(self) -> None:
        self.centre.start()

    def close(self) -> None:
        self.site.stop()
        self.centre.stop()


def bridged_brokers(workdir: Path, site_conf: Callable[[str], str], force_restart: bool = False) -> BridgedBrokers:
    """Namespaces joined by a veth WAN when ``ip netns`` is allowed, else (or when forced) the restart fallback."""
    if force_restart:
        return RestartedCentre(workdir, site_conf, "forced")
    try:
        return NetnsSites(workdir, site_conf)
    except (BrokerError, OSError) as exc:  # no `ip`, not root, or namespaces refused
        return RestartedCentre(workdir, site_conf, f"no network namespaces: {exc}")
