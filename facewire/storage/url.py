"""Database URLs: ``sqlite:///relative/file``, ``sqlite:////absolute/file`` or ``postgresql://user:pass@host/db``.

A PostgreSQL URL may carry ``?password_file=/run/secrets/x`` (a docker secret):
the password is read from that file instead of being written into the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from facewire.errors import ConfigError

Engine = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed database URL: the engine and either the SQLite file or the PostgreSQL URL."""

    engine: Engine
    path: Path | None = None
    url: str = ""

    def __str__(self) -> str:
        return str(self.path) if self.engine == "sqlite" else redact(self.url)


def parse_database_url(url: str | Path) -> DatabaseUrl:
    """The engine a URL names; a plain path (str or Path) is a SQLite file."""
    if isinstance(url, Path):
        return DatabaseUrl("sqlite", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return DatabaseUrl("sqlite", Path(url))
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///relative/file or sqlite:////absolute/file")
        return DatabaseUrl("sqlite", Path(rest[1:]))
    if scheme in ("postgresql", "postgres"):
        return DatabaseUrl("postgresql", url=url)
    raise ConfigError(f"unsupported database URL scheme {scheme!r} (sqlite:// or postgresql://)")


def configured(url: str, path: Path) -> DatabaseUrl:
    """The database of a settings section: its ``database_url`` if set, else the SQLite file ``path``."""
    return parse_database_url(url) if url else DatabaseUrl("sqlite", path)


def redact(url: str) -> str:
    """The URL without its password (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def postgres_conninfo(url: str) -> str:
    """A libpq connection string for ``url``; ``password_file`` is read and passed as the password."""
    from psycopg.conninfo import make_conninfo

    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    password_files = [value for key, value in query if key == "password_file"]
    plain = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "password_file"])))
    if not password_files:
        return plain
    try:
        password = Path(password_files[0]).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the database password file: {exc}") from exc
    return make_conninfo(plain, password=password)
