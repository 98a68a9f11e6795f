"""What the result subscribers persist, behind two small interfaces (opened by :mod:`alert_service.store_factory`).

``ResultLog`` is the detection log (recorder, ``facewire log``, operator
confirmations); ``AlertStore`` holds sightings, incidents and alerts. Both are
safe for several processes on one database: idempotent writes keyed by
(node, seq) and by incident key.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from facewire.schema import Alert, Candidate, FaceResult


@dataclass(frozen=True)
class LogRow:
    """One recorded result."""

    node: str
    seq: int
    track: int
    frame: int
    ts: float
    decided_at: float
    name: str
    known: bool
    score: float
    threshold: float
    gallery_version: str
    model: str
    candidates: tuple[Candidate, ...] = ()

    @classmethod
    def from_result(cls, result: FaceResult) -> LogRow:
        return cls(
            node=result.node,
            seq=result.seq,
            track=result.track,
            frame=result.frame,
            ts=result.ts,
            decided_at=result.classified_at,
            name=result.name,
            known=result.known,
            score=result.score,
            threshold=result.threshold,
            gallery_version=result.gallery_version,
            model=result.model,
            candidates=result.candidates,
        )

    def as_result(self) -> FaceResult:
        """The row as a FaceResult (latency and box are not kept)."""
        return FaceResult(
            node=self.node,
            seq=self.seq,
            track=self.track,
            frame=self.frame,
            ts=self.ts,
            name=self.name,
            score=self.score,
            known=self.known,
            threshold=self.threshold,
            model=self.model,
            gallery_version=self.gallery_version,
            classified_at=self.decided_at,
            latency_ms=0.0,
            candidates=self.candidates,
        )

    def export(self) -> dict[str, object]:
        """A flat dict for CSV / JSON export."""
        return {
            "node": self.node,
            "seq": self.seq,
            "track": self.track,
            "frame": self.frame,
            "ts": self.ts,
            "decided_at": self.decided_at,
            "name": self.name,
            "known": self.known,
            "score": round(self.score, 5),
            "threshold": self.threshold,
            "gallery_version": self.gallery_version,
            "model": self.model,
            "candidates": json.dumps([[c.name, round(c.score, 5)] for c in self.candidates]),
        }


@dataclass(frozen=True)
class LogQuery:
    """Filters of ``facewire log``; None means no filter. Newest first."""

    person: str | None = None
    node: str | None = None
    since: float | None = None
    until: float | None = None
    unknown_only: bool = False
    limit: int = 50


@dataclass(frozen=True)
class Confirmation:
    """An operator's verdict on one recorded result: who it really was (``None``: a stranger)."""

    id: int
    node: str
    seq: int
    truth: str | None
    row: LogRow | None


class ResultLog(ABC):
    """The detection log."""

    @abstractmethod
    def insert(self, rows: Sequence[LogRow]) -> int:
        """Write rows in one transaction; rows whose (node, seq) exists are skipped. Returns rows added."""

    @abstractmethod
    def query(self, query: LogQuery) -> Iterator[LogRow]:
        """Rows matching ``query``, newest first (``limit`` 0: all)."""

    @abstractmethod
    def last_seen(self, person: str) -> LogRow | None:
        """The newest row naming ``person``."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def newest_decided_at(self) -> float | None:
        """When the newest of the last rows written was classified (None: no rows)."""

    @abstractmethod
    def enforce_retention(self, max_age_days: float, max_rows: int, now: float) -> int:
        """Delete rows older than ``max_age_days`` and beyond the newest ``max_rows`` (0: no bound)."""

    @abstractmethod
    def confirm(self, node: str, seq: int, truth: str | None, now: float) -> None:
        """Record an operator's verdict (a later verdict on the same result replaces it)."""

    @abstractmethod
    def confirmations_after(self, last_id: int) -> list[Confirmation]:
        """Verdicts newer than ``last_id`` with the result they are about."""

    @abstractmethod
    def erase_person(self, person: str, marker: str) -> int:
        """Replace ``person`` by ``marker`` in every row (name, candidates) and verdict; idempotent."""

    @abstractmethod
    def close(self) -> None: ...


@dataclass(frozen=True)
class Sighting:
    """A result a rule looked at, kept for the rule's time window."""

    rule: str
    subject: str
    node: str
    seq: int
    track: int
    name: str
    score: float
    ts: float


@dataclass(frozen=True)
class Incident:
    """The newest incident of one (rule, subject)."""

    key: str
    first_ts: float
    last_ts: float
    count: int


@dataclass(frozen=True)
class StoredAlert:
    alert: Alert
    count: int
    last_ts: float
    published: bool
    acked_at: float | None
    acked_by: str | None
    webhook: str


class AlertStore(ABC):
    """Sightings, incidents and alerts; ``transaction`` makes a read-decide-write step atomic across processes."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def add_sighting(self, sighting: Sighting) -> bool:
        """Keep a sighting; False if this rule has already seen this (node, seq)."""

    @abstractmethod
    def sightings(self, rule: str, subject: str, since: float, until: float) -> list[Sighting]: ...

    @abstractmethod
    def latest_incident(self, rule: str, subject: str) -> Incident | None: ...

    @abstractmethod
    def open_incident(self, alert: Alert) -> bool:
        """Store a new incident and its alert; False if the key exists already."""

    @abstractmethod
    def extend_incident(self, key: str, ts: float) -> None: ...

    @abstractmethod
    def mark_published(self, key: str) -> None: ...

    @abstractmethod
    def unpublished(self, older_than: float) -> list[Alert]: ...

    @abstractmethod
    def set_webhook_status(self, key: str, status: str) -> None: ...

    @abstractmethod
    def alerts(self, limit: int, unacked_only: bool = False, node: str | None = None) -> list[StoredAlert]: ...

    @abstractmethod
    def acknowledge(self, key: str, by: str, now: float) -> bool: ...

    @abstractmethod
    def prune_sightings(self, before: float) -> int: ...

    @abstractmethod
    def newest_sighting_ts(self) -> float | None:
        """The capture time of the newest sighting kept (None: none)."""

    @abstractmethod
    def erase_person(self, person: str, marker: str) -> int:
        """Replace ``person`` by ``marker`` in sightings, incidents and alerts (ids included); idempotent."""

    @abstractmethod
    def close(self) -> None: ...
