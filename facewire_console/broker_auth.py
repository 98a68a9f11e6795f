"""Broker credentials and the production (TLS + passwords + ACL) configuration.

``facewire broker add-node NODE`` adds a node account to a mosquitto password
file (hashed by ``mosquitto_passwd``) and stores the generated password in a
0600 file next to it, for the node's ``mqtt.password_file``. The ACL
(broker/acl) lets a node user publish only its own embeddings and status.
``facewire broker secure-config`` renders broker/mosquitto.conf plus
broker/secure.conf into one file: the loopback development listener stays
(anonymous, for tests and health checks), the network listener is TLS-only
with passwords and the ACL.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from facewire.broker import BROKER_CONF
from facewire.errors import BrokerError, ConfigError
from facewire.topics import valid_node_id

BROKER_DIR = BROKER_CONF.parent
SECURE_CONF = BROKER_DIR / "secure.conf"
ACL_FILE = BROKER_DIR / "acl"


def add_account(passwd_file: Path, user: str, secrets_dir: Path, password: str | None = None) -> tuple[str, Path]:
    """Add or replace ``user`` in ``passwd_file``; return the password and the file it is stored in."""
    if not valid_node_id(user):
        raise ConfigError(f"account name {user!r} must be letters, digits, '-', '_' or '.' (max 64)")
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        raise BrokerError("mosquitto_passwd is not installed (Debian/Ubuntu: apt-get install mosquitto)")
    password = password or secrets.token_urlsafe(24)
    passwd_file.parent.mkdir(parents=True, exist_ok=True)
    create = [] if passwd_file.exists() else ["-c"]
    run = subprocess.run(
        [binary, *create, "-b", str(passwd_file), user, password], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise BrokerError(f"mosquitto_passwd failed: {run.stderr.strip() or run.stdout.strip()}")
    os.chmod(passwd_file, 0o600)
    secrets_dir.mkdir(parents=True, exist_ok=True)
    stored = secrets_dir / f"{user}.password"
    stored.touch(mode=0o600)
    os.chmod(stored, 0o600)
    stored.write_text(password + "\n", encoding="utf-8")
    return password, stored


def render_secure_config(conf_dir: Path, tls_port: int, base: Path = BROKER_CONF) -> str:
    """broker/mosquitto.conf + broker/secure.conf with the credential and certificate paths under ``conf_dir``.

    ``conf_dir`` holds ``passwd``, ``acl`` and ``certs/{ca.crt,server.crt,server.key}``.
    """
    secure = SECURE_CONF.read_text().replace("@CONF_DIR@", str(conf_dir.resolve()))
    secure = secure.replace("listener 8883\n", f"listener {tls_port}\n")
    if f"listener {tls_port}\n" not in secure:
        raise BrokerError("broker/secure.conf has no 'listener 8883' line")
    return "per_listener_settings true\n" + base.read_text() + "\n" + secure
