"""``facewire broker bridge-config``: a site broker bridged to a central broker with mosquitto's own bridge.

Edges publish to their site's broker; its bridge forwards embeddings, node status and thumbnails to the
centre at QoS 1 and brings the classifier's results back, so the site's dashboard and alerts read results
locally. The bridge keeps a persistent session on both ends (cleansession false, persistence on): while the
WAN is down, the site broker queues what goes out and the centre queues the results coming back, each up to
its max_queued_messages (broker/mosquitto.conf). Topic lines come from facewire.topics.Topics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import click

from facewire.cli_common import fail_cleanly
from facewire.config import MqttSettings
from facewire.errors import ConfigError
from facewire.mqtt import broker_password, parse_broker_url
from facewire.topics import Topics, valid_node_id
from facewire_console.broker import BROKER_CONF
from facewire_console.private_files import write_private

KEEPALIVE = 30  # seconds: a dead WAN link is noticed within 1.5x this and the queue takes over
RESTART = (2, 15)  # restart_timeout base cap: jittered back-off, first retry after 2 s, at most 15 s apart


def shipped_limit(option: str, conf: Path = BROKER_CONF) -> int:
    """The integer value of a global option of broker/mosquitto.conf (the site and centre brokers run it)."""
    found = re.search(rf"(?m)^{option} (\d+)$", conf.read_text())
    if found is None:
        raise ConfigError(f"{conf} has no '{option} N' line")
    return int(found.group(1))


@dataclass(frozen=True)
class Bridge:
    """One site's bridge to the centre: what ``bridge-config`` renders."""

    site: str
    centre: str
    username: str | None = None
    password: str | None = None
    cafile: Path | None = None
    certfile: Path | None = None  # a client certificate, when the centre requires one (broker/secure.conf does)
    keyfile: Path | None = None
    nodes: tuple[str, ...] = ()
    prefix: str = "facewire"
    keepalive: int = KEEPALIVE
    rate: float = 20.0  # faces per second the whole site sends, to size the outage the queue holds

    def __post_init__(self) -> None:
        for name in (self.site, *self.nodes):
            if not valid_node_id(name):
                raise ConfigError(f"{name!r} must be letters, digits, '-', '_' or '.' (max 64)")
        address = parse_broker_url(self.centre)
        if address.tls and self.cafile is None:
            raise ConfigError(f"{self.centre} is TLS: give --cafile (the CA that signed the centre's certificate)")
        if (self.certfile is None) != (self.keyfile is None) or (self.certfile and not address.tls):
            raise ConfigError("--certfile and --keyfile go together, and only with an mqtts:// centre")
        if self.password is not None and self.username is None:
            raise ConfigError("a password needs --username")
        if not 5 <= self.keepalive <= 3600:
            raise ConfigError("--keepalive must be 5..3600 seconds")

    @property
    def remote_clientid(self) -> str:
        return f"facewire-bridge-{self.site}"

    def lines(self) -> list[tuple[str, str]]:
        """(topic, direction) of every bridged topic: out to the centre, in from it. Replay requests go out too:
        a site subscriber whose session the site broker lost asks the centre's classifiers (facewire.replay)."""
        t = Topics(self.prefix)
        replay = (t.results_replay(), "out")
        if not self.nodes:
            outs = [t.embeddings_all(), t.node_status_all(), t.thumbnails_all()]
            return [(topic, "out") for topic in outs] + [replay, (t.results_all(), "in")]
        out = [(topic, "out") for n in self.nodes for topic in (t.embeddings(n), t.node_status(n), t.thumbnails(n))]
        return [*out, replay] + [(t.results(n), "in") for n in self.nodes]

    def site_conf(self) -> str:
        """The mosquitto.conf snippet to append to the site broker's configuration."""
        address = parse_broker_url(self.centre)
        queued = shipped_limit("max_queued_messages")
        hours = queued / self.rate / 3600 if queued else float("inf")
        rows = [
            f"# facewire bridge: site {self.site} -> centre {self.centre} (facewire broker bridge-config).",
            "# Append to the site broker's broker/mosquitto.conf (persistence true). While the link is down the",
            f"# site queues what goes out: max_queued_messages {queued} holds {hours:.1f} h at {self.rate:g} faces/s.",
            f"connection facewire-{self.site}",
            f"address {address.host}:{address.port}",
            "bridge_protocol_version mqttv311",
            f"remote_clientid {self.remote_clientid}",
            f"local_clientid {self.remote_clientid}-local",
            "# Persistent sessions on both brokers: nothing queued is dropped when the link or a broker restarts.",
            "cleansession false",
            "local_cleansession false",
            "try_private true",
            "start_type automatic",
            f"restart_timeout {RESTART[0]} {RESTART[1]}",
            f"keepalive_interval {self.keepalive}",
            f"bridge_max_packet_size {shipped_limit('max_packet_size')}",
            "bridge_attempt_unsubscribe false",
            "# Retained 1 / 0 (last will) on $SYS/broker/connection/<remote_clientid>/state, on this broker only.",
            "notifications true",
            "notifications_local_only true",
        ]
        if self.username is not None:
            rows.append(f"remote_username {self.username}")
        if self.password is not None:
            rows.append(f"remote_password {self.password}")
        if address.tls:
            rows += [f"bridge_cafile {self.cafile}", "bridge_insecure false", "bridge_tls_version tlsv1.2"]
        if self.certfile is not None:
            rows += [f"bridge_certfile {self.certfile}", f"bridge_keyfile {self.keyfile}"]
        rows += [f"topic {topic} {direction} 1" for topic, direction in self.lines()]
        return "\n".join(rows) + "\n"

    def centre_acl(self) -> str:
        """The centre's broker/acl section for the bridge's account: publish what goes out, read what comes in."""
        account = self.username or self.remote_clientid
        grant = {"out": "write", "in": "read"}
        rows = [
            f"# --- bridge of site {self.site} (facewire broker bridge-config): forwards its edges, reads results.",
            f"user {account}",
        ]
        rows += [f"topic {grant[direction]} {topic}" for topic, direction in self.lines()]
        return "\n".join(rows) + "\n"


def write_bridge(bridge: Bridge, out: Path) -> tuple[Path, Path]:
    """Write the site snippet (0600: it may hold the password) and the centre's ACL section into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    conf, acl = out / f"bridge-{bridge.site}.conf", out / f"centre-acl-{bridge.site}"
    write_private(conf, bridge.site_conf())
    acl.write_text(bridge.centre_acl(), encoding="utf-8")
    return conf, acl


@click.command("bridge-config")
@click.option("--site", required=True, help="This site's name (one topic level); names the bridge's client ids.")
@click.option("--centre", required=True, help="The central broker: mqtt://HOST:PORT or mqtts://HOST:PORT.")
@click.option("--username", default=None, help="The bridge's account on the centre (the ACL section is for it).")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None)
@click.option(
    "--cafile", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="CA of an mqtts:// centre."
)
@click.option("--certfile", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Client certificate.")
@click.option("--keyfile", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Its private key.")
@click.option("--node", "nodes", multiple=True, help="Bridge only this node's topics (repeat); default: every node.")
@click.option("--topic-prefix", default="facewire", show_default=True, help="mqtt.topic_prefix of the deployment.")
@click.option("--keepalive", type=int, default=KEEPALIVE, show_default=True, help="Seconds; a dead link is noticed.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Site faces/s, to size the outage held.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the files written and the bridged topics as JSON.")
@fail_cleanly
def bridge_config(
    site: str,
    centre: str,
    username: str | None,
    password_file: Path | None,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    nodes: tuple[str, ...],
    topic_prefix: str,
    keepalive: int,
    rate: float,
    out: Path,
    as_json: bool,
) -> None:
    """Write the site broker's bridge to the centre (OUT/bridge-SITE.conf) and the centre's ACL section."""
    password = broker_password(MqttSettings(password_file=password_file))
    cafile, certfile, keyfile = (path.resolve() if path else None for path in (cafile, certfile, keyfile))
    bridge = Bridge(site, centre, username, password, cafile, certfile, keyfile, nodes, topic_prefix, keepalive, rate)
    conf, acl = write_bridge(bridge, out)
    if as_json:
        topics = [{"topic": topic, "direction": direction, "qos": 1} for topic, direction in bridge.lines()]
        click.echo(json.dumps({"site_conf": str(conf), "centre_acl": str(acl), "topics": topics}))
        return
    click.echo(f"site broker: append {conf} to its mosquitto.conf (restart it: bridges are not reloaded)")
    click.echo(f"centre broker: add {acl} to its ACL file and reload it (SIGHUP)")
