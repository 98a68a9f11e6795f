"""Dashboard accounts (argon2id hashes in a 0600 JSON file), the login rate limit, sessions and CSRF tokens."""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from facewire.errors import ConfigError
from facewire_console.private_files import write_private

USER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 8
MAX_KEYS = 100_000  # client addresses and user names with recent failed logins
_hasher = PasswordHasher()  # argon2id with the library's current recommended cost
# A hash to verify against when the user does not exist, so both cases cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


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
        write_private(self.path, json.dumps({"users": users}, indent=1))
        return new

    def verify(self, name: str, password: str) -> bool:
        """True if ``password`` is ``name``'s; takes the same time for an unknown user."""
        stored = self._load().get(name)
        digest = str(stored.get("hash", "")) if isinstance(stored, dict) else _DUMMY_HASH
        try:
            return _hasher.verify(digest, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


MAX_LOCK = 24 * 3600.0  # the longest back-off of one key


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    strikes: int = 0  # lockouts so far: each one lasts twice the one before
    locked_until: float = 0.0
    last: float = 0.0


class LoginLimiter:
    """Failed logins per key in a sliding window; ``attempts`` of them lock the key, with exponential back-off.

    The dashboard keys a login on its client address and on user name plus address, never on the user
    name alone, so nobody elsewhere can lock an account out; :meth:`unlock` lifts a user's lockouts.
    """

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._keys: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def retry_after(self, keys: list[str], now: float | None = None) -> float:
        """Seconds until all of ``keys`` may try again (0: allowed now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max([0.0, *(self._keys[k].locked_until - now for k in keys if k in self._keys)])

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in keys:
                record = self._keys.setdefault(key, _Failures())
                record.last = now
                record.times.append(now)
                while record.times and record.times[0] <= now - self.window:
                    record.times.popleft()
                if len(record.times) >= self.attempts:
                    record.strikes += 1
                    record.locked_until = now + min(self.window * 2 ** (record.strikes - 1), MAX_LOCK)
                    record.times.clear()
            if len(self._keys) > MAX_KEYS:  # many keys tried: forget the stalest first
                for stale in sorted(self._keys, key=lambda k: self._keys[k].last)[: MAX_KEYS // 10]:
                    del self._keys[stale]

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)

    def unlock(self, user: str) -> int:
        """Lift every lockout of ``user`` (from any address, and of those addresses); how many keys were freed."""
        with self._lock:
            addresses = [k.split("@", 1)[1] for k in self._keys if k.startswith(f"user:{user}@")]
            freed = [f"user:{user}@{a}" for a in addresses] + [f"client:{a}" for a in addresses]
            return sum(self._keys.pop(key, None) is not None for key in freed)


def login_keys(user: str, address: str) -> list[str]:
    """The limiter keys of one login: the client address, and the user name from that address."""
    return [f"client:{address}", f"user:{user}@{address}"]


class UnlockRequests:
    """``facewire web unlock USER`` leaves a file here; the dashboard lifts USER's lockouts on the next login."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def request(self, user: str) -> None:
        if not USER_PATTERN.fullmatch(user):
            raise ConfigError(f"user name {user!r}: letters, digits and _.@- only (at most 64)")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / user).touch()

    def apply(self, limiter: LoginLimiter) -> list[str]:
        """Unlock every requested user; the names."""
        if not self.folder.is_dir():
            return []
        done = []
        for marker in self.folder.iterdir():
            if USER_PATTERN.fullmatch(marker.name):
                limiter.unlock(marker.name)
                done.append(marker.name)
            marker.unlink(missing_ok=True)
        return done


class SessionRegistry:
    """The sessions the dashboard issued and has not revoked: a signed cookie alone is not a login.

    Held in memory: logging out revokes the session for good, and a restart of the dashboard ends all.
    """

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._sessions: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, user: str, now: float | None = None) -> str:
        """A new session id for ``user``."""
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}
            self._sessions[sid] = (user, now + self.max_age)
        return sid

    def active(self, sid: object, user: object, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            entry = self._sessions.get(sid) if isinstance(sid, str) else None
        return entry is not None and entry[0] == user and entry[1] > now

    def revoke(self, sid: object) -> None:
        with self._lock:
            if isinstance(sid, str):
                self._sessions.pop(sid, None)


def session_secret(path: Path) -> str:
    """The cookie-signing key in ``path``, created (0600, 256 bits) on first use."""
    if path.exists():
        text = path.read_text(encoding="utf-8").strip()
        if len(text) >= 32:
            return text
        raise ConfigError(f"{path}: session key too short (delete it to make a new one)")
    secret = secrets.token_hex(32)
    write_private(path, secret + "\n")
    return secret


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: object, given: object) -> bool:
    """Constant-time comparison of the session's token with the one a form sent."""
    if not isinstance(expected, str) or not isinstance(given, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
