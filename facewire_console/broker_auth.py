"""Broker credentials and the production (TLS + passwords + ACL) configuration.

``facewire broker add-node NODE`` adds a node account to a mosquitto password
file (hashed as ``mosquitto_passwd`` does), stores the generated password in a 0600
file next to it for the node's ``mqtt.password_file``, and can make a running
mosquitto reload its password and ACL files (SIGHUP; connected clients stay).
The ACL (broker/acl) gives each role account (admin, service, classifier,
viewer, homeassistant, api, frigate, frigate_nvr) its topics and every other
account the node role: its own embeddings and status only. ``facewire broker secure-config`` renders
broker/mosquitto.conf plus broker/secure.conf into one file with no anonymous
listener: only the TLS listener with passwords and the ACL.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import signal
from pathlib import Path

from facewire.errors import BrokerError, ConfigError
from facewire.topics import valid_node_id
from facewire_console.broker import BROKER_CONF
from facewire_console.private_files import write_private

BROKER_DIR = BROKER_CONF.parent
SECURE_CONF = BROKER_DIR / "secure.conf"
ACL_FILE = BROKER_DIR / "acl"
# Accounts with a role section in broker/acl: never a node's name.
ROLE_ACCOUNTS = ("admin", "facewire", "classifier", "viewer", "homeassistant", "api", "frigate", "frigate_nvr")
PBKDF2_ROUNDS = 101  # mosquitto_passwd's default for $7$
SALT_BYTES = 12
DEV_LISTENER = re.compile(r"(?ms)^# --- Development listener -+\n.*\Z")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """mosquitto 2's password hash: ``$7$101$<salt>$<hash>``, PBKDF2-HMAC-SHA512 with 101 rounds (mosquitto_passwd)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ROUNDS)
    return f"$7${PBKDF2_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def add_account(passwd_file: Path, user: str, secrets_dir: Path, password: str | None = None) -> tuple[str, Path]:
    """Add or replace ``user`` (hashed) in ``passwd_file``; return the password and the file it is stored in.

    Every other line is kept as it is (comments, other accounts), and the file is rewritten in place: a
    file bind-mounted into a container (a compose secret) shows the change without a restart.
    """
    if not valid_node_id(user):
        raise ConfigError(f"account name {user!r} must be letters, digits, '-', '_' or '.' (max 64)")
    password = password or secrets.token_urlsafe(24)
    lines = passwd_file.read_text(encoding="utf-8").splitlines() if passwd_file.exists() else []
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    text = "".join(f"{line}\n" for line in [*kept, f"{user}:{hash_password(password)}"])
    write_private(passwd_file, text, in_place=True)
    stored = secrets_dir / f"{user}.password"
    write_private(stored, password + "\n")
    return password, stored


def add_node(passwd_file: Path, node: str, secrets_dir: Path) -> tuple[str, Path]:
    """``add_account`` for an edge node: refused for the role accounts of broker/acl."""
    if node in ROLE_ACCOUNTS:
        raise ConfigError(
            f"{node!r} is a role account of broker/acl, not a node id (reserved: {', '.join(ROLE_ACCOUNTS)})"
        )
    return add_account(passwd_file, node, secrets_dir)


def add_role(passwd_file: Path, role: str, secrets_dir: Path) -> tuple[str, Path]:
    """``add_account`` for one of the role accounts of broker/acl (admin, facewire, classifier, ...)."""
    if role not in ROLE_ACCOUNTS:
        raise ConfigError(f"{role!r} is not a role account of broker/acl ({', '.join(ROLE_ACCOUNTS)}); nodes: add-node")
    return add_account(passwd_file, role, secrets_dir)


def reload_broker(pid_file: Path) -> int:
    """SIGHUP the mosquitto whose pid is in ``pid_file``: it re-reads its password and ACL files."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError, IndexError) as exc:
        raise BrokerError(f"cannot reload the broker of {pid_file}: {exc}") from exc
    return pid


def render_secure_config(conf_dir: Path, tls_port: int, base: Path = BROKER_CONF) -> str:
    """broker/mosquitto.conf without its anonymous development listener + broker/secure.conf.

    ``conf_dir`` holds ``passwd``, ``acl`` and ``certs/{ca.crt,server.crt,server.key}``.
    """
    secure = SECURE_CONF.read_text().replace("@CONF_DIR@", str(conf_dir.resolve()))
    secure = secure.replace("listener 8883\n", f"listener {tls_port}\n")
    if f"listener {tls_port}\n" not in secure:
        raise BrokerError("broker/secure.conf has no 'listener 8883' line")
    common, found = DEV_LISTENER.subn("", base.read_text())
    if found != 1 or "allow_anonymous true" in common:
        raise BrokerError(f"{base.name}: the development listener must be its last section")
    return "per_listener_settings true\n" + common + "\n" + secure
