"""Dashboard accounts (argon2id hashes in a 0600 JSON file), the login rate limit and CSRF tokens."""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from facewire.errors import ConfigError

USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 8
MAX_KEYS = 100_000  # client addresses and user names with recent failed logins
_hasher = PasswordHasher()  # argon2id with the library's current recommended cost
# A hash to verify against when the user does not exist, so both cases cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


class UserStore:
    """Accounts of the dashboard in one JSON file: {"users": {name: {"hash": ..., "created": ...}}}."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, object]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read dashboard accounts {self.path}: {exc}") from exc
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise ConfigError(f"{self.path}: not a facewire accounts file")
        return users

    def names(self) -> list[str]:
        return sorted(self._load())

    def add(self, name: str, password: str) -> bool:
        """Create or replace ``name``'s password; True if the account is new."""
        if not USER_PATTERN.fullmatch(name):
            raise ConfigError(f"user name {name!r}: letters, digits and _.@- only (at most 64)")
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"password too short (at least {MIN_PASSWORD} characters)")
        users = self._load()
        new = name not in users
        users[name] = {"hash": _hasher.hash(password), "created": time.time()}
        _write_private(self.path, json.dumps({"users": users}, indent=1))
        return new

    def verify(self, name: str, password: str) -> bool:
        """True if ``password`` is ``name``'s; takes the same time for an unknown user."""
        stored = self._load().get(name)
        digest = str(stored.get("hash", "")) if isinstance(stored, dict) else _DUMMY_HASH
        try:
            return _hasher.verify(digest, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


class LoginLimiter:
    """Failed logins per key (client address, user name) in a sliding window."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until any of ``keys`` may try again (0: allowed now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            for key in keys:
                failures = self._failures.get(key)
                if failures is None:
                    continue
                while failures and failures[0] <= now - self.window:
                    failures.popleft()
                if len(failures) >= self.attempts:
                    wait = max(wait, failures[0] + self.window - now)
        return wait

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in keys:
                self._failures[key].append(now)
            if len(self._failures) > MAX_KEYS:  # many user names tried: forget the stalest keys first
                for stale in sorted(self._failures, key=lambda k: self._failures[k][-1])[: MAX_KEYS // 10]:
                    del self._failures[stale]

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def session_secret(path: Path) -> str:
    """The cookie-signing key in ``path``, created (0600, 256 bits) on first use."""
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if len(text) >= 32:
            return text
        raise ConfigError(f"{path}: session key too short (delete it to make a new one)")
    secret = secrets.token_hex(32)
    _write_private(path, secret + "\n")
    return secret


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: object, given: object) -> bool:
    """Constant-time comparison of the session's token with the one a form sent."""
    if not isinstance(expected, str) or not isinstance(given, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
