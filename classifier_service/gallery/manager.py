"""The gallery's pure core: apply gallery commands to the store and swap a fresh Matcher into the classifier.

Every change builds a new Matcher aside and hands it to ``on_swap`` in one
assignment, so recognition never pauses. With a store of its own (SQLite) the
gallery version is a content hash of the store (people x sources, negatives), so
replicas applying the same commands converge on the same version. With the shared
gallery (PostgreSQL) the version is the last change applied, and every replica
follows the change log (:mod:`classifier_service.gallery.changes`) incrementally.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from classifier_service import index_choice
from classifier_service.gallery.changes import Change, ChangeLog, start_follower, version_of
from classifier_service.gallery.clusters import LeaderClusters
from classifier_service.gallery.erasure import finish_erasures
from classifier_service.gallery.folder_sync import SyncReport, sync_folder
from classifier_service.gallery.index_file import load_index, save_index
from classifier_service.gallery.live import Served, apply_changes, served
from classifier_service.gallery.store import GalleryStore
from classifier_service.matcher import UNKNOWN, Matcher
from classifier_service.quality import Cohort, cohort_for
from facewire.config import GallerySettings
from facewire.faces import FaceAnalyzer
from facewire.logs import kv
from facewire.schema import FaceEmbedding, FaceResult
from facewire.schema.gallery import GalleryCommand, GalleryEvent

log = logging.getLogger(__name__)
POLL_SECONDS = 5.0  # shared gallery: the newest change is also read this often (a missed notification)


class GalleryManager:
    """Owns the store, the in-memory gallery arrays, probe memory and unknown clusters of one replica."""

    def __init__(
        self,
        store: GalleryStore,
        store_dir: Path,
        folder: Path,
        model_id: str,
        policy: GallerySettings,
        analyzer: Callable[[], FaceAnalyzer],
        threshold: float,
        top_k: int,
        instance: str,
        cohort: Cohort | None = None,
    ) -> None:
        """``cohort``: the matcher's cohort normalisation (default: the shipped one for ``model_id``)."""
        self.store, self.store_dir, self.folder = store, store_dir, folder
        self.cohort = cohort if cohort is not None else cohort_for(model_id)
        self.model_id, self.policy, self.analyzer = model_id, policy, analyzer
        self.threshold, self.top_k, self.instance = threshold, top_k, instance
        self.on_swap: Callable[[Matcher, str], None] | None = None
        self.on_forget: Callable[[str], int] | None = None  # drops results the classifier remembers
        self.version = ""
        self.matcher = Matcher(np.zeros((0, 0), dtype=np.float32), [], threshold, top_k)
        self._ids: list[int] = []
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._probes: OrderedDict[tuple[str, int], tuple[np.ndarray, str]] = OrderedDict()
        self._probe_lock = threading.Lock()
        self.clusters = LeaderClusters(policy.cluster_cosine)
        self._unknowns_added = 0
        self._observations: queue.Queue[list[tuple[FaceEmbedding, FaceResult]]] | None = None
        self.dropped_observations = 0
        self.restored_from_file = False
        self._published: tuple[list[int], Matcher, str] = ([], self.matcher, "")
        self._save_lock, self._file_lock = threading.Lock(), threading.Lock()
        self._save_due = False
        self._saver: threading.Thread | None = None
        self.fresh_store = False  # set by open_manager: a new replica asks its peers for the gallery
        self.shared = store if isinstance(store, ChangeLog) else None  # the gallery of record (PostgreSQL)
        self.seq = 0  # shared: the last change served
        self.on_served: Callable[[list[Change], str], None] | None = None  # shared: others' changes applied
        self._apply_lock = threading.RLock()
        self._claiming = False
        self._following: threading.Event | None = None
        self._served: Served | None = None  # shared: what is served, as the next change starts from

    # -- start-up -----------------------------------------------------------------------------------
    def open(self, on_progress: Callable[[int, int], None] | None = None) -> SyncReport:
        """Restore from the index file (or rebuild it from the store), then sync the dataset folder."""
        self.restore()
        report = self.sync(on_progress)
        self.prune_unknowns()
        self.clusters.restore(self.store.unknowns(self.model_id, mine=True))
        return report

    def start_following(self) -> None:
        """Shared gallery: follow its changes on a thread of their own (after catching up on those made since
        ``open``). Call once ``on_swap`` is set, so that no change is served without the classifier."""
        if self.shared is not None and self._following is None:
            keep = index_choice.thread_count_keeper()
            self._following = start_follower(self.shared, self.follow, POLL_SECONDS, keep)

    def stop_following(self) -> None:
        if self._following is not None:
            self._following.set()

    def prune_unknowns(self) -> int:
        """Apply the retention of unknown faces (count and age)."""
        cutoff = time.time() - self.policy.unknown_retention_days * 86400
        return self.store.prune_unknowns(self.policy.unknown_max, cutoff)

    def restore(self) -> None:
        """Serve the store's gallery: from the saved index when it checks out, else rebuilt from the store."""
        if self.shared is not None:
            self._load_shared(self.shared)
            return
        rows = self.store.rows(self.model_id, with_vectors=False)
        version = self.store.version(self.model_id)
        index = load_index(self.store_dir, rows.ids, version) if rows.ids else None
        if index is not None:
            vectors = index.reconstruct_n(0, index.ntotal)
            self.restored_from_file = True
            self._install(rows.ids, rows.people, vectors, version, index=index, save=False)
        else:
            self.rebuild()

    def _load_shared(self, shared: ChangeLog) -> None:
        """Serve the shared gallery as of its newest change (the index file when it holds exactly that)."""
        with self._apply_lock:
            snapshot = shared.snapshot(self.model_id)
            rows, version = snapshot.rows, version_of(snapshot.seq)
            assert rows.vectors is not None
            index = load_index(self.store_dir, rows.ids, version) if rows.ids else None
            self.restored_from_file, self.seq = index is not None, snapshot.seq
            self._install_served(served(rows.ids, rows.people, rows.vectors, index), version, save=False)
            if index is None and rows.ids:
                self._save_soon()  # the index file for the next start, written off the start-up path

    def _install_served(self, state: Served, version: str, save: bool) -> None:
        """Shared gallery: serve ``state`` (its centroids as they are) and keep it for the next change."""
        vectors = state.vectors
        self._install(state.ids, state.people, vectors, version, state.index, save, state.persons.centroids)
        self._served = replace(state, index=self.matcher.index)

    def follow(self) -> None:
        """Shared gallery: serve the changes committed since the version served (only the rows and people
        they touch are read and recomputed, :mod:`classifier_service.gallery.live`), then tell ``on_served``
        about those other replicas made."""
        assert self.shared is not None
        with self._apply_lock:
            assert self._served is not None
            before = self._served.persons.counts  # people served, with their rows: no pass over every row
            changes = self.shared.changes(self.seq)
            if changes is None:  # pruned past what this replica serves
                self._load_shared(self.shared)
                changes = []
            elif not changes:
                return
            else:
                state = apply_changes(self._served, changes, self.shared, self.model_id)
                self.seq = changes[-1].seq
                self._install_served(state, version_of(self.seq), save=False)
                self._save_soon()
            gone, version = set(before) - set(self._served.persons.counts), self.version
        for person in gone:  # forgotten or renamed elsewhere: no probe or remembered result names them here
            self.forget_probes(person)
            if self.on_forget is not None:
                self.on_forget(person)
        theirs = [c for c in changes if c.command and c.replica != self.instance]
        if theirs and self.on_served is not None:
            self.on_served(theirs, version)

    @contextmanager
    def change(self, key: str, command: str) -> Iterator[bool]:
        """Apply one command as one transaction of the shared gallery: yields False if another replica
        claimed it (apply nothing), and serves the change once committed. Without one, yields True."""
        if self.shared is None:
            yield True
            return
        with self.shared.claim(key, command) as claimed:
            self._claiming = True
            try:
                yield claimed
            finally:
                self._claiming = False
        self.follow()

    def rebuild(self) -> None:
        """Reload every row from the store and serve it (and rewrite the index file); shared gallery: serve
        the changes committed since the version served (during a claim: once it commits)."""
        if self.shared is not None:
            if not self._claiming:
                self.follow()
            return
        rows = self.store.rows(self.model_id)
        assert rows.vectors is not None
        self._install(rows.ids, rows.people, rows.vectors, self.store.version(self.model_id))

    def sync(self, on_progress: Callable[[int, int], None] | None = None) -> SyncReport:
        """Finish pending erasures, then enrol new folder photos and drop vanished ones (forgotten people never)."""
        pending = finish_erasures(self.store, self.folder)
        report = sync_folder(
            self.folder, self.store, self.model_id, self.analyzer, self.policy, self._vectors, on_progress, pending
        )
        if report.added or report.removed:
            self.rebuild()
        return report

    def _install(
        self,
        ids: list[int],
        people: list[str],
        vectors: np.ndarray,
        version: str,
        index: Any = None,
        save: bool = True,
        centroids: dict[str, np.ndarray] | None = None,
    ) -> None:
        negatives = self.store.negatives(self.model_id)
        matcher = Matcher(
            vectors,
            people,
            self.threshold,
            self.top_k,
            index=index,
            negatives=(negatives.vectors, negatives.people) if negatives.vectors is not None else None,
            centroids=centroids,
            cohort=self.cohort,
        )
        self._ids, self._vectors = list(ids), vectors
        self.matcher, self.version = matcher, version
        if self.on_swap is not None:
            self.on_swap(matcher, version)
        self._published = (self._ids, matcher, version)
        if save and ids:
            self._save(self._published)

    def append(self, person: str, vectors: np.ndarray) -> None:
        """Serve rows just added for ``person`` (the newest rows of the store) without reloading every vector;
        the index file is written shortly after, off this path (see ``flush``)."""
        if self.shared is not None:
            self.rebuild()
            return
        ids = self.store.rows(self.model_id, with_vectors=False).ids
        known = len(self._ids)
        if len(ids) != known + len(vectors) or ids[:known] != self._ids:
            self.rebuild()
            return
        stacked = vectors if not known else np.vstack([self._vectors, vectors])
        people = self.matcher.labels + [person] * len(vectors)
        self._install(ids, people, stacked, self.store.version(self.model_id), save=False)
        self._save_soon()

    def _save_soon(self) -> None:
        """Write the index file within a second, on the saver thread."""
        with self._save_lock:
            self._save_due = True
            if self._saver is None:
                self._saver = threading.Thread(target=self._save_loop, name="gallery-index-saver", daemon=True)
                self._saver.start()

    def flush(self) -> None:
        """Write the index file now if a change is pending (at shutdown)."""
        with self._save_lock:
            due, self._save_due = self._save_due, False
        if due:
            self._save(self._published)

    def _save_loop(self) -> None:
        while True:
            time.sleep(1.0)
            self.flush()

    def _save(self, published: tuple[list[int], Matcher, str]) -> None:
        ids, matcher, version = published
        with self._file_lock:
            if ids:
                save_index(self.store_dir, matcher.index, ids, version)

    @property
    def dim(self) -> int:
        return self.matcher.dim or (int(self._vectors.shape[1]) if self._vectors.ndim == 2 else 0)

    # -- probes and unknowns (called from the classifier's worker thread) ---------------------------
    def observe(self, items: list[tuple[FaceEmbedding, FaceResult]]) -> None:
        """Remember recent probes (for reject/relabel); hand results to the observation thread if started
        (kept off the recognition path; dropped and counted when it falls behind), else record them now."""
        with self._probe_lock:
            for embedding, result in items:
                self._probes[embedding.key] = (embedding.emb, result.name)
            while len(self._probes) > self.policy.probe_memory:
                self._probes.popitem(last=False)
        if self._observations is None:
            self.record(items)
            return
        try:
            self._observations.put_nowait(items)
        except queue.Full:
            if self.dropped_observations % 1000 < len(items):
                log.warning(kv("observations-dropped", total=self.dropped_observations + len(items)))
            self.dropped_observations += len(items)

    def start_observer(self, backlog: int = 1000) -> None:
        """Record unknowns and last-seen on a thread of their own (``backlog`` batches at most)."""
        self._observations = queue.Queue(backlog)
        threading.Thread(target=self._observe_loop, name="gallery-observer", daemon=True).start()

    def _observe_loop(self) -> None:
        assert self._observations is not None
        while True:
            items = self._observations.get()
            try:
                self.record(items)
            except Exception:  # never let one bad write stop the observations
                log.exception(kv("observation-failed", count=len(items)))

    def record(self, items: list[tuple[FaceEmbedding, FaceResult]]) -> None:
        """Keep last-seen of named faces and unknown faces, clustered (bounded, with retention)."""
        seen = [(r.name, r.node, r.ts) for _e, r in items if r.known]
        if seen:
            self.store.update_last_seen(seen)
        fresh = [
            (e.node, e.seq, e.ts, self.clusters.assign(e.emb), e.emb)
            for e, r in items
            if r.name == UNKNOWN and self.policy.unknown_max
        ]
        if fresh:
            self.store.add_unknowns(self.model_id, fresh)
            self._unknowns_added += len(fresh)
            if self._unknowns_added >= 500:
                self._unknowns_added = 0
                self.prune_unknowns()

    def probe(self, key: tuple[str, int]) -> tuple[np.ndarray, str] | None:
        with self._probe_lock:
            return self._probes.get(key)

    def forget_probes(self, person: str) -> int:
        with self._probe_lock:
            keys = [k for k, (_v, name) in self._probes.items() if name == person]
            for key in keys:
                del self._probes[key]
        return len(keys)

    def rename_probes(self, old: str, new: str) -> int:
        """Probes remembered as ``old`` are ``new`` now (a later reject of them makes a negative of ``new``)."""
        with self._probe_lock:
            keys = [k for k, (_v, name) in self._probes.items() if name == old]
            for key in keys:
                self._probes[key] = (self._probes[key][0], new)
        return len(keys)

    def event(self, command: GalleryCommand, event: str, **details: Any) -> GalleryEvent:
        """An event on gallery/events about ``command``."""
        people, embeddings = len(set(self.matcher.labels)), len(self._ids)
        return GalleryEvent(
            event, command.id, self.instance, command.op, self.version, people, embeddings, time.time(), details
        )

    def served(self, command: str) -> GalleryEvent:
        """``served``: this replica serves the change command ``command`` made (its version, people, embeddings)."""
        people, embeddings = len(set(self.matcher.labels)), len(self._ids)
        return GalleryEvent("served", command, self.instance, "", self.version, people, embeddings, time.time())


def log_event(event: GalleryEvent) -> None:
    log.info(kv("gallery-event", kind=event.event, id=event.id, op=event.op, version=event.gallery_version))
