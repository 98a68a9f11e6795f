"""The secrets the docker compose stack reads, created once with generated passwords (``facewire deploy init``).

Every file is mode 0600 in a 0700 folder. Compose bind-mounts a file secret with
its host owner and mode (``uid``/``mode`` in the compose file apply to Swarm only),
so a 0600 secret is readable in a container only by its owner: run as root,
``deploy init`` hands the files to the images' user (uid 10001, docker/Dockerfile).
mosquitto's start script and the postgres entrypoint read their secrets as root.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from facewire_console.private_files import create_private

IMAGE_UID = 10001  # the user "facewire" of docker/Dockerfile's runtime stage


@dataclass(frozen=True)
class SecretFile:
    """One file under ``secrets/`` that docker-compose.yml (or an optional compose file) mounts."""

    name: str
    meaning: str
    password: bool  # generated password; otherwise created empty


STACK_SECRETS = (
    SecretFile("mqtt_password", "the services' broker password (user facewire)", True),
    SecretFile("mqtt_classifier_password", "the classifiers' broker password (user classifier)", True),
    SecretFile("mqtt_admin_password", "the dashboard's broker password (user admin: gallery commands)", True),
    SecretFile("mqtt_homeassistant_password", "Home Assistant's broker password (user homeassistant)", True),
    SecretFile("mqtt_api_password", "the REST API's broker password (user api)", True),
    SecretFile("mqtt_frigate_password", "the Frigate bridge's broker password (user frigate)", True),
    SecretFile(
        "mqtt_frigate_nvr_password", "Frigate's own broker password (user frigate_nvr: its mqtt.password)", True
    ),
    SecretFile("mqtt_edge_users", "edge accounts, hashed lines from `facewire broker add-node`", False),
    SecretFile("postgres_password", "the PostgreSQL password (docker-compose.postgres.yml only)", True),
)


@dataclass(frozen=True)
class Created:
    """What ``init_secrets`` did with one file."""

    path: Path
    meaning: str
    created: bool


def init_secrets(directory: Path, owner: int | None = None) -> list[Created]:
    """Create ``DIR/secrets/*`` (0600, folder 0700), keeping files that exist; chown them to ``owner`` if given."""
    folder = directory / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    (folder / "certs").mkdir(exist_ok=True)  # the broker's TLS certificates: scripts/make-certs.sh secrets/certs
    done = []
    for secret in STACK_SECRETS:
        path = folder / secret.name
        created = create_private(path, secrets.token_hex(24) + "\n" if secret.password else "")
        if owner is not None:
            os.chown(path, owner, owner)
        done.append(Created(path, secret.meaning, created))
    return done
