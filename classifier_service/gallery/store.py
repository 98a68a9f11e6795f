"""What the gallery persists, behind one small interface (SQLite or PostgreSQL, see docs/storage.md).

The store is the source of truth: people, enrolled embeddings (with the hash of
their source photo or vector, model id, origin and time), negative examples,
unknown embeddings for clustering, and an audit trail. The FAISS index file
beside it is a cache that is rebuilt from the store whenever it does not match.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from facewire.erasure import erasure_marker


@dataclass(frozen=True)
class NewEmbedding:
    """One embedding to enrol: ``source`` identifies it (photo SHA-256 or vector hash), ``origin`` says how."""

    source: str
    origin: str
    vector: np.ndarray


@dataclass(frozen=True)
class Rows:
    """Enrolled (or negative) rows of one model: store ids, person per row, vectors (N, dim) or None."""

    ids: list[int]
    people: list[str]
    vectors: np.ndarray | None
    sources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Unknown:
    """An embedding nobody matched, kept for clustering."""

    id: int
    node: str
    seq: int
    ts: float
    cluster: int
    vector: np.ndarray


@dataclass(frozen=True)
class ForgetCounts:
    """What a forget removed (and the photo sources, so callers can purge caches and files)."""

    embeddings: int
    negatives: int
    sources: list[str]
    origins: list[str]


def erased_rename_details(details: str) -> str:
    """The details of a ``rename`` audit row with both names replaced by erasure markers (for ``forget``)."""
    found = json.loads(details)
    scrubbed = {k: erasure_marker(v) if k in ("old", "new") and isinstance(v, str) else v for k, v in found.items()}
    return json.dumps(scrubbed, sort_keys=True)


def folder_prefix(person: str) -> str:
    """Origin prefix of the rows enrolled from the dataset folder ``GALLERY/<person>/``."""
    return f"folder:{person}/"


def vector_source(vector: np.ndarray) -> str:
    """The source id of an embedding enrolled without a photo: hash of its float16 bytes."""
    return "vec:" + hashlib.sha256(np.asarray(vector, dtype="<f2").tobytes()).hexdigest()


@dataclass(frozen=True)
class RosterEntry:
    """One enrolled person as ``facewire people`` lists them."""

    person: str
    photos: int
    enrolled: float
    seen_node: str | None
    seen_at: float | None


class GalleryStore(ABC):
    """Persistence of one gallery replica. Implementations are safe to call from several threads."""

    created = False  # True when opening made a new, empty store (the replica then asks its peers to sync)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Every store call of this thread inside the block joins one transaction, committed when the block
        ends and rolled back if it raises (inside another transaction or a shared gallery's claim: joins it)."""

    @abstractmethod
    def add_embeddings(self, person: str, model: str, items: Sequence[NewEmbedding], now: float) -> list[bool]:
        """Insert rows; an existing (person, model, source) is skipped (False). Returns one flag per item."""

    @abstractmethod
    def rows(self, model: str, with_vectors: bool = True) -> Rows:
        """Every enrolled row of ``model`` in id order."""

    @abstractmethod
    def delete_rows(self, ids: Sequence[int]) -> int: ...

    @abstractmethod
    def origins(self, model: str, prefix: str) -> dict[str, tuple[int, str, str]]:
        """origin -> (id, person, source) of rows whose origin starts with ``prefix``."""

    @abstractmethod
    def add_rejection(self, model: str, origin: str, source: str, reason: str) -> None:
        """Remember that a folder photo failed the checks, so a restart does not check it again."""

    @abstractmethod
    def rejection(self, model: str, origin: str, source: str) -> str | None: ...

    @abstractmethod
    def add_negative(self, person: str, model: str, item: NewEmbedding, now: float) -> bool: ...

    @abstractmethod
    def negatives(self, model: str) -> Rows: ...

    @abstractmethod
    def forget(self, person: str) -> ForgetCounts:
        """Remove every trace of ``person``: embeddings, negatives, rows naming them; audit rows get a marker.
        In the same transaction a tombstone (keyed hash of the name, and the marker) is kept until
        :meth:`drop_tombstone`: the copies outside the store (photos) are deleted after it."""

    @abstractmethod
    def tombstoned(self, people: Iterable[str]) -> set[str]:
        """Those of ``people`` forgotten while a copy outside the store remains (never enrol them again)."""

    @abstractmethod
    def drop_tombstone(self, person: str) -> None:
        """Every copy of ``person`` is gone: forget the tombstone too."""

    @abstractmethod
    def rename(self, old: str, new: str) -> dict[str, int] | None:
        """Move every row of ``old`` to ``new`` in one transaction (embeddings, negatives, folder origins and
        rejections, person, last seen, audit subjects); rows changed per table. None, with nothing changed,
        when ``new`` already has embeddings or negatives (never a silent merge)."""

    @abstractmethod
    def people(self, model: str) -> dict[str, int]:
        """person -> number of enrolled embeddings."""

    @abstractmethod
    def version(self, model: str) -> str:
        """Deterministic content hash: replicas holding the same rows have the same version."""

    @abstractmethod
    def audit(self, op: str, actor: str, subject: str, details: Mapping[str, object], now: float) -> None: ...

    @abstractmethod
    def audit_events(self, limit: int = 100) -> list[dict[str, object]]: ...

    @abstractmethod
    def add_unknowns(self, model: str, items: Sequence[tuple[str, int, float, int, np.ndarray]]) -> None:
        """Keep (node, seq, ts, cluster, vector) rows; a (node, seq) seen before is ignored."""

    @abstractmethod
    def unknowns(self, model: str, cluster: int | None = None, mine: bool = False) -> list[Unknown]:
        """Kept unknown faces; those of this replica's ``cluster`` (or all of its own if ``mine``) when asked.
        A shared store holds every replica's (clusters are numbered per replica)."""

    @abstractmethod
    def delete_unknowns(self, ids: Sequence[int]) -> int: ...

    @abstractmethod
    def prune_unknowns(self, max_rows: int, before: float) -> int:
        """Drop unknowns older than ``before`` and beyond the newest ``max_rows``."""

    @abstractmethod
    def update_last_seen(self, sightings: Sequence[tuple[str, str, float]]) -> None:
        """Record (person, node, ts) sightings; only a newer ts replaces a person's last location."""

    @abstractmethod
    def last_seen(self, person: str) -> tuple[str, float] | None:
        """(node, ts) of the person's newest sighting."""

    @abstractmethod
    def roster(self, model: str) -> list[RosterEntry]:
        """Every enrolled person: photos (embeddings), when first enrolled, where and when last seen."""

    @abstractmethod
    def close(self) -> None: ...
