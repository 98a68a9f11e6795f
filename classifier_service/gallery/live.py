"""Apply a shared gallery's changes to what a replica serves, without reloading the gallery.

New rows are read by id and added to a copy of the served FAISS index, removed rows are taken out
of a copy (the rest keep their order, so position i is still row i), both through
:mod:`classifier_service.index_choice` (which keeps a compressed index's codebooks, or rebuilds
when the gallery outgrows its kind); relabelled rows change only their labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier_service import index_choice
from classifier_service.gallery.changes import Change, ChangeLog

if TYPE_CHECKING:
    import faiss


@dataclass(frozen=True)
class Served:
    """What a replica serves: store row ids, the person of each, their vectors (N, dim) and the index
    (None: to be built from the vectors)."""

    ids: list[int]
    people: list[str]
    vectors: np.ndarray
    index: faiss.Index | None


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
            rows = store.rows_by_id(model, change.ids)
            names = dict(zip(rows.ids, rows.people, strict=True))
            state.people = [names.get(row, person) for row, person in zip(state.ids, state.people, strict=True)]
    return Served(state.ids, state.people, state.vectors, state.index)


class _State:
    def __init__(self, served: Served) -> None:
        self.ids, self.people, self.vectors = list(served.ids), list(served.people), served.vectors
        self.index: Any = served.index if served.index is not None and served.index.ntotal else None

    def add(self, store: ChangeLog, model: str, ids: list[int]) -> None:
        held = set(self.ids)
        rows = store.rows_by_id(model, [i for i in ids if i not in held])
        if not rows.ids or rows.vectors is None:
            return
        if self.index is not None:  # the served index is never changed: it may be searched right now
            self.index = index_choice.added(self.index, rows.vectors)
        self.vectors = rows.vectors if not self.ids else np.vstack([self.vectors, rows.vectors])
        self.ids += rows.ids
        self.people += rows.people

    def remove(self, gone: set[int]) -> None:
        keep = [i for i, row in enumerate(self.ids) if row not in gone]
        if len(keep) == len(self.ids):
            return
        if self.index is not None:
            self.index = index_choice.removed(self.index, np.setdiff1d(np.arange(len(self.ids)), keep))
        self.ids = [self.ids[i] for i in keep]
        self.people = [self.people[i] for i in keep]
        self.vectors = self.vectors[keep]
