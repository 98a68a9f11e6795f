"""Container health check: is this host's service instance online and heartbeating?

Every facewire service publishes a retained status on
``<prefix>/services/<service>/<instance>/status`` with ``state`` and ``ts``
and refreshes it every few seconds; the broker replaces it with the last will
(``offline``) when the process vanishes. The check reads those retained
messages with the service's own settings (same environment, same config file,
same broker credentials) and succeeds when every named service has an instance
of this host (instance ``HOST`` or ``HOST-<anything>``; in a container the host
name is the container id; ``--host`` names a fixed instance id instead) that is
online with a heartbeat younger than ``--max-age`` seconds::

    python -m facewire_console.healthcheck classifier
    python -m facewire_console.healthcheck --host alert-service recorder alerts stats nodes

Exit status 0 healthy, 1 unhealthy or broker unreachable (Docker reserves 2).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections.abc import Sequence

from facewire.config import load_settings
from facewire.errors import FacewireError, SchemaError
from facewire.mqtt import Message, MqttConnection
from facewire.schema.status import ServiceStatus
from facewire.topics import Topics


def belongs_to_host(instance: str, host: str) -> bool:
    """True for the instance ids a service on ``host`` uses: ``host`` itself or ``host-<suffix>``."""
    return instance == host or instance.startswith(f"{host}-")


def healthy_instances(statuses: dict[str, bytes], host: str, now: float, max_age: float) -> list[str]:
    """Instances of ``host`` whose retained status is online and younger than ``max_age`` seconds."""
    found = []
    for instance, payload in statuses.items():
        try:
            status = ServiceStatus.from_json(payload)
        except SchemaError:
            continue
        if not belongs_to_host(instance, host):
            continue
        fresh = status.ts is not None and now - status.ts <= max_age
        if status.state == "online" and fresh:
            found.append(instance)
    return found


def read_statuses(
    connection: MqttConnection, topics: Topics, services: Sequence[str], wait: float
) -> dict[str, dict[str, bytes]]:
    """Retained status payloads per service and instance, collected for ``wait`` seconds after connecting."""
    statuses: dict[str, dict[str, bytes]] = {service: {} for service in services}
    lock = threading.Lock()

    def record(message: Message) -> None:
        parts = message.topic.split("/")
        service, instance = parts[-3], parts[-2]
        if service in statuses and message.payload:
            with lock:
                statuses[service][instance] = message.payload

    connection.subscribe(topics.service_status("+", "+"), record)
    connection.connect()
    time.sleep(wait)
    connection.close()
    with lock:
        return {service: dict(found) for service, found in statuses.items()}


def argument_parser() -> argparse.ArgumentParser:
    """The health check's command line."""
    parser = argparse.ArgumentParser(prog="python -m facewire_console.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="+", help="service names, e.g. classifier, recorder, alerts, stats")
    parser.add_argument("--max-age", type=float, default=60.0, help="oldest acceptable heartbeat in seconds")
    parser.add_argument(
        "--host", default=socket.gethostname(), help="instance id or its prefix (default: this host's name)"
    )
    parser.add_argument("--wait", type=float, default=1.5, help="seconds to collect retained statuses")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Check the named services; print one line per service; return the exit status."""
    args = argument_parser().parse_args(argv)
    try:
        settings = load_settings()
        topics = Topics(settings.mqtt.topic_prefix)
        client_id = f"healthcheck-{args.host}-{time.monotonic_ns() % 1_000_000}"
        statuses = read_statuses(MqttConnection(settings.mqtt, client_id), topics, args.services, args.wait)
    except FacewireError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    now, status = time.time(), 0
    for service in args.services:
        good = healthy_instances(statuses[service], args.host, now, args.max_age)
        print(f"{service}: {'ok ' + ', '.join(good) if good else 'no online instance on ' + args.host}")
        status = status if good else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
