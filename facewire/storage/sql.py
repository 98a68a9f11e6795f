"""SQL written once for SQLite and PostgreSQL: what the engines spell differently, and what a store needs of one.

Shared statements are written with ``?`` placeholders and ``{greatest}``-style
fields; :meth:`Dialect.sql` turns them into the engine's text. Both
``SqliteDatabase`` and :class:`~facewire.storage.postgres.PostgresDatabase` are
a :class:`Database`: ``write`` one transaction, ``read`` a plain connection,
each a DB-API connection (``execute(sql, params)``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from facewire.storage.url import Engine


@dataclass(frozen=True)
class Dialect:
    """The spelling of one engine."""

    engine: Engine
    mark: str  # the DB-API placeholder
    greatest: str  # the scalar maximum of two values
    least: str  # the scalar minimum of two values
    binary: str  # a collation comparing bytes (the same order on both engines)
    contains: str  # "does {text} contain {part}" as an expression, text or bytes

    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders, ``{greatest}``/``{least}``/``{binary}`` fields) in this dialect."""
        text = statement
        for field, spelling in (("{greatest}", self.greatest), ("{least}", self.least), ("{binary}", self.binary)):
            text = text.replace(field, spelling)
        return text if self.mark == "?" else text.replace("?", self.mark)

    def contains_sql(self, text: str) -> str:
        """An expression true where column ``text`` contains the next parameter."""
        return self.contains.format(text=text, part="?")


SQLITE = Dialect("sqlite", "?", "max", "min", "BINARY", "instr({text}, {part}) > 0")
POSTGRESQL = Dialect("postgresql", "%s", "greatest", "least", '"C"', "position({part} IN {text}) > 0")


class Database(Protocol):
    """A database shared by replicas: connections for one transaction or for reading."""

    def write(self) -> AbstractContextManager[Any]: ...

    def read(self) -> AbstractContextManager[Any]: ...

    def close(self) -> None: ...
