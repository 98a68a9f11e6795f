"""API keys: scopes, a hashed key file, and a per-key rate limit.

A key is 32 random bytes (256 bits) shown once; the file keeps only its SHA-256.
A slow password hash (argon2) protects guessable secrets; a 256-bit random key
cannot be guessed, so one SHA-256 per request is as safe and costs microseconds
instead of the tens of milliseconds argon2 would add to every call.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from facewire.config import Settings
from facewire.errors import ConfigError
from facewire_console.private_files import write_private

SCOPES = ("recognize", "read", "admin")  # each scope may do everything the ones before it may
KEY_PREFIX = "fwk_"
KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def keys_file(settings: Settings) -> Path:
    """Where ``facewire api add-key`` keeps the hashed keys (beside the dashboard's data)."""
    return settings.web.data_dir / "api-keys.json"


def allows(granted: str, needed: str) -> bool:
    """Whether a key of scope ``granted`` may use an endpoint that needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: its name, scope, rate limit (requests per minute) and the SHA-256 of the secret."""

    name: str
    scope: str
    per_minute: int
    sha256: str
    created: float
    revoked: float | None = None


class KeyStore:
    """The key file (JSON, mode 0600); re-read when it changes, so ``add-key``/``revoke`` apply to a running API."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_digest: dict[str, ApiKey] = {}

    def _read(self) -> list[ApiKey]:
        if not self.path.exists():
            return []
        try:
            rows = json.loads(self.path.read_text())
            return [ApiKey(**row) for row in rows]
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"unreadable API key file {self.path}: {exc}") from exc

    def _write(self, keys: list[ApiKey]) -> None:
        write_private(self.path, json.dumps([asdict(k) for k in keys], indent=1))

    def add(self, name: str, scope: str, per_minute: int) -> str:
        """Create key ``name`` (replacing an older key of that name) and return the secret, which is not stored."""
        if not KEY_NAME.fullmatch(name):
            raise ConfigError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if scope not in SCOPES:
            raise ConfigError(f"scope {scope!r}: one of {', '.join(SCOPES)}")
        if not 1 <= per_minute <= 100_000:
            raise ConfigError("the rate limit must be 1..100000 requests per minute")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            keys = [k for k in self._read() if k.name != name]
            keys.append(ApiKey(name, scope, per_minute, key_digest(secret), time.time()))
            self._write(keys)
        return secret

    def revoke(self, name: str) -> bool:
        """Revoke key ``name``; False if there is no live key of that name."""
        with self._lock:
            keys = self._read()
            live = [k for k in keys if k.name == name and k.revoked is None]
            if not live:
                return False
            self._write([ApiKey(**{**asdict(k), "revoked": time.time()}) if k in live else k for k in keys])
        return True

    def names(self) -> list[ApiKey]:
        return self._read()

    def lookup(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, or None."""
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._by_digest = {k.sha256: k for k in self._read() if k.revoked is None}
                self._stamp = stamp
            return self._by_digest.get(key_digest(secret))


class RateLimiter:
    """A token bucket per key name: ``per_minute`` requests a minute, bursts up to the same number."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: ApiKey) -> float:
        """0 if ``key`` may make a request now (and count it), else the seconds until it may."""
        now, rate = time.monotonic(), key.per_minute / 60.0
        with self._lock:
            tokens, since = self._buckets.get(key.name, (float(key.per_minute), now))
            tokens = min(float(key.per_minute), tokens + (now - since) * rate)
            if tokens < 1.0:
                self._buckets[key.name] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[key.name] = (tokens - 1.0, now)
            return 0.0
