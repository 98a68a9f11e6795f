"""Apply a shared gallery's changes to what a replica serves, without reloading the gallery.

New rows are read by id and added beside the served FAISS index (its large part is shared, the newest
rows are a small exact part of their own until they are merged in), removed rows are taken out of a copy
(the rest keep their order, so position i is still row i; the changes of one batch share one copy), both
through
:mod:`classifier_service.index_choice` (which keeps a compressed index's codebooks, or rebuilds
when the gallery outgrows its kind); relabelled rows change only their labels.

Each person's centroid (what the Matcher scores with) is kept beside them as a running sum of their
vectors, so a change recomputes the centroids of the people it touched only. New rows go into spare
room at the end of the vector array: the rows served before are never written to, so the array of the
Matcher being searched is not changed under it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier_service import index_choice
from classifier_service.gallery.changes import Change, ChangeLog
from classifier_service.matcher import normalised, person_sums

if TYPE_CHECKING:
    import faiss

GROWTH = 1.25  # spare room made when the vector array is full: adding is amortised O(rows added)


@dataclass(frozen=True)
class People:
    """Per person: how many rows, the sum of their vectors (float64) and the centroid (the normalised sum)."""

    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    centroids: dict[str, np.ndarray] = field(default_factory=dict)


def people_of(vectors: np.ndarray, people: list[str]) -> People:
    """The per-person sums and centroids of a whole gallery (one bincount per dimension)."""
    if not people:
        return People()
    names, counts, sums = person_sums(vectors, people)
    return People(
        dict(zip(names, counts.tolist(), strict=True)),
        dict(zip(names, sums, strict=True)),
        dict(zip(names, normalised(sums), strict=True)),
    )


@dataclass(frozen=True)
class Served:
    """What a replica serves: store row ids, the person of each, their vectors (N, dim; a view of ``room``,
    whose rows past N are spare), the index (None: to be built from the vectors) and per-person sums."""

    ids: list[int]
    people: list[str]
    room: np.ndarray
    index: faiss.Index | None
    persons: People

    @property
    def vectors(self) -> np.ndarray:
        return self.room[: len(self.ids)]


def served(ids: list[int], people: list[str], vectors: np.ndarray, index: faiss.Index | None) -> Served:
    """A whole gallery, as loaded."""
    return Served(list(ids), list(people), vectors, index, people_of(vectors, people))


def apply_changes(served: Served, changes: list[Change], store: ChangeLog, model: str) -> Served:
    """``served`` after ``changes`` (in seq order). A change of negatives needs nothing here: the Matcher
    made from the result reads them from the store."""
    state = _State(served)
    for change in changes:
        if change.kind == "add":
            state.add(store, model, change.ids)
        elif change.kind == "remove":
            state.remove(set(change.ids))
        elif change.kind == "relabel":
            state.relabel(store, model, change.ids)
    for person in state.touched:  # the other people's centroids are reused as they are
        if person in state.counts:
            state.centroids[person] = normalised(state.sums[person])
        else:
            state.centroids.pop(person, None)
    persons = People(state.counts, state.sums, state.centroids)
    return Served(state.ids, state.people, state.room, state.index, persons)


class _State:
    def __init__(self, served: Served) -> None:
        self.ids, self.people, self.room = list(served.ids), list(served.people), served.room
        self.index: Any = served.index if served.index is not None and served.index.ntotal else None
        self.counts, self.sums = dict(served.persons.counts), dict(served.persons.sums)
        self.centroids = dict(served.persons.centroids)
        self.touched: set[str] = set()
        self.index_owned = False  # the index is copied once, by the first change of the batch that needs it

    def _count(self, person: str, vectors: np.ndarray, sign: int) -> None:
        """Add (sign 1) or take away (-1) rows of ``person`` from their sum (a new array: the old is served)."""
        self.touched.add(person)
        self.counts[person] = self.counts.get(person, 0) + sign * len(vectors)
        if self.counts[person] <= 0:
            del self.counts[person]
            self.sums.pop(person, None)
            return
        total = vectors.sum(axis=0, dtype=np.float64)
        self.sums[person] = self.sums.get(person, np.zeros_like(total)) + sign * total

    def _count_rows(self, people: list[str], vectors: np.ndarray, sign: int) -> None:
        names = np.array(people)
        for person in set(people):
            self._count(person, vectors[names == person], sign)

    def add(self, store: ChangeLog, model: str, ids: list[int]) -> None:
        rows = store.rows_by_id(model, [i for i in ids if not self._holds(i)])
        if not rows.ids or rows.vectors is None:
            return
        if self.index is not None:  # the served index is never changed: it may be searched right now
            self.index = index_choice.appended(self.index, rows.vectors)  # its large part is shared, not copied
        self._append(rows.vectors)
        self.ids += rows.ids
        self.people += rows.people
        self._count_rows(rows.people, rows.vectors, 1)

    def _holds(self, row: int) -> bool:
        """Whether row id ``row`` is served (ids are served in increasing order: a shared store gives them out
        under its write lock, so a later change never adds a smaller id)."""
        at = bisect.bisect_left(self.ids, row)
        return at < len(self.ids) and self.ids[at] == row

    def _append(self, vectors: np.ndarray) -> None:
        """Write ``vectors`` after the rows held, into spare room (or a larger copy when there is none)."""
        held, dim = len(self.ids), int(vectors.shape[1])
        if self.room.ndim != 2 or self.room.shape[1] != dim or held + len(vectors) > len(self.room):
            room = np.empty((int((held + len(vectors)) * GROWTH) + 16, dim), dtype=np.float32)
            if held:
                room[:held] = self.room[:held]
            self.room = room
        self.room[held : held + len(vectors)] = vectors

    def remove(self, gone: set[int]) -> None:
        keep = [i for i, row in enumerate(self.ids) if row not in gone]
        if len(keep) == len(self.ids):
            return
        dropped = np.setdiff1d(np.arange(len(self.ids)), keep)
        if self.index is not None:
            self.index = index_choice.removed(self.index, dropped, copy=not self.index_owned)
            self.index_owned = True
        self._count_rows([self.people[i] for i in dropped], self.room[dropped], -1)
        self.ids = [self.ids[i] for i in keep]
        self.people = [self.people[i] for i in keep]
        self.room = self.room[keep]  # a new array: the served one keeps its rows

    def relabel(self, store: ChangeLog, model: str, ids: list[int]) -> None:
        rows = store.rows_by_id(model, ids)
        names = dict(zip(rows.ids, rows.people, strict=True))
        moved = [i for i, row in enumerate(self.ids) if row in names and names[row] != self.people[i]]
        if not moved:
            return
        vectors = self.room[moved]
        self._count_rows([self.people[i] for i in moved], vectors, -1)
        self._count_rows([names[self.ids[i]] for i in moved], vectors, 1)
        for i in moved:
            self.people[i] = names[self.ids[i]]
