"""The FAISS index a gallery of N rows is served from, chosen by N; grown and shrunk without retraining.

- Up to ``FLAT_MAX`` rows: ``IndexFlatIP``, exact.
- Above: exact re-ranking of a compressed scan, ``IndexRefineFlat(IndexPQFastScan)``. Every row is
  kept twice: a 4-bit product-quantised code of ``dim / 4`` bytes (``dim / 2`` sub-quantisers of 16
  centroids), scanned for every probe with SIMD, and the float vector. The ``top_k * k_factor`` best
  codes are re-scored exactly against their float vectors, so the scores are exact inner products
  and only the ranking of the scan is approximate.

Why not IVF or HNSW (bench/index_scale.py, real SFace embeddings among realistic distractors): a
stranger's nearest face is barely nearer than the next thousand (cosine ~0.34 vs ~0.08 +- 0.09 for
any pair), so IVF misses it unless it probes most lists (IVFFlat at 100k rows, 1,264 lists, nprobe
256: recall@1 0.93, strangers 0.86), and HNSW (M 32) needs efSearch 512 at 100k for recall@1 0.996,
builds 100k rows in a minute and cannot remove rows. The compressed scan has no partition to miss and trains once:
the codebooks trained when a gallery outgrows ``FLAT_MAX`` serve it as it grows (new rows are only
encoded) and when rows go (the rest are re-encoded, no retraining).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import faiss  # the `server` extra

FLAT_MAX = 50_000  # rows: up to here an exact scan is as fast as the compressed one (BENCHMARKS.md)
TRAIN_ROWS = 65_536  # rows sampled to train the product quantiser
K_FACTOR = 50  # codes re-scored exactly per result asked: recall@1 >= 0.99 at 1M rows (BENCHMARKS.md)
RECENT_SHARE, RECENT_MIN = 0.01, 1_000  # newest rows searched beside the large part before a merge


@dataclass(frozen=True)
class IndexPlan:
    """The index kind for a gallery and its parameters."""

    kind: Literal["flat", "pq-refine"]
    sub_quantizers: int = 0
    k_factor: int = 0


def choose(rows: int, dim: int) -> IndexPlan:
    """The plan for ``rows`` vectors of ``dim`` dimensions (flat when a compressed scan cannot help)."""
    if rows <= FLAT_MAX or dim % 2:
        return IndexPlan("flat")
    return IndexPlan("pq-refine", dim // 2, K_FACTOR)


def fits(plan: IndexPlan, rows: int, dim: int) -> bool:
    """Whether an index of ``plan`` may keep serving ``rows`` rows: flat up to ``FLAT_MAX``, compressed down
    to half of it (so a gallery hovering at the limit is not rebuilt on every change)."""
    if plan.kind == "flat":
        return rows <= FLAT_MAX or dim % 2 == 1
    return rows > FLAT_MAX // 2


def plan_of(index: faiss.Index) -> IndexPlan:
    """The plan an existing index follows (one built here or read back from an index file)."""
    import faiss

    index = faiss.downcast_index(_parts(index)[0])
    if isinstance(index, faiss.IndexRefine):
        base = faiss.downcast_index(index.base_index)
        if isinstance(base, faiss.IndexPQFastScan):
            return IndexPlan("pq-refine", int(base.pq.M), int(index.k_factor))
    if isinstance(index, faiss.IndexFlat):
        return IndexPlan("flat")
    raise ValueError(f"not an index kind of the gallery: {type(index).__name__}")


def build(vectors: np.ndarray, plan: IndexPlan | None = None) -> faiss.Index:
    """A filled index of ``vectors`` (N, dim) following ``plan`` (default: ``choose`` by size)."""
    import faiss

    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(rows.shape[1]) if rows.ndim == 2 and rows.shape[1] else 1
    plan = plan or choose(len(rows), dim)
    index: faiss.Index
    if plan.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        base = faiss.IndexPQFastScan(dim, plan.sub_quantizers, 4, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).permutation(len(rows))[:TRAIN_ROWS]
        with _threads(1):  # dim / 2 tiny k-means: OpenMP's fork and join cost ~8x the work on 2 cores
            base.train(rows[np.sort(sample)])
        index = faiss.IndexRefineFlat(base)
        index.k_factor = plan.k_factor
    if len(rows):
        index.add(rows)
    return index


def appended(index: faiss.Index, vectors: np.ndarray) -> faiss.Index:
    """A new index: ``index``'s rows then ``vectors``, sharing ``index``'s large part instead of copying it
    (``index`` itself, possibly being searched, is not touched). The newest rows wait in a small exact part
    searched beside it (positions continue after the large part's) until they outgrow ``RECENT_SHARE`` of
    the gallery (at least ``RECENT_MIN`` rows); then both become one index again (:func:`added`)."""
    import faiss

    base, recent = _parts(index)
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    waiting = recent.reconstruct_n(0, recent.ntotal) if recent is not None else rows[:0]
    newest = np.vstack([waiting, rows])
    if len(newest) > max(RECENT_MIN, RECENT_SHARE * int(base.ntotal)):
        return added(base, newest)
    small = faiss.IndexFlatIP(int(base.d))
    small.add(newest)
    swig: Any = faiss  # the stubs miss IndexShards' (dim, threaded, successive_ids) constructor
    both = swig.IndexShards(int(base.d), False, True)  # not threaded; ids continue from part to part
    both.add_shard(base)
    both.add_shard(small)
    return both


def merged(index: faiss.Index) -> faiss.Index:
    """``index`` as one index of the plan's kind (a two-part index of :func:`appended` merged into a copy)."""
    base, recent = _parts(index)
    return base if recent is None else added(base, recent.reconstruct_n(0, recent.ntotal))


def _parts(index: faiss.Index) -> tuple[faiss.Index, faiss.Index | None]:
    """The large part and the small part of newest rows of an index made by :func:`appended` (else the index
    itself and None)."""
    import faiss

    if isinstance(index, faiss.IndexShards):  # the Python objects that own the parts, not at()'s borrowed views
        shards: Any = index
        base, recent = shards.referenced_objects  # kept by add_shard: the parts live as long as the index
        return base, recent
    return index, None


def added(index: faiss.Index, vectors: np.ndarray, copy: bool = True) -> faiss.Index:
    """A new index: ``index``'s rows then ``vectors`` (``index`` itself, possibly being searched, is
    not touched; with ``copy`` False, an index nobody searches yet, it may be grown in place and returned).
    Rows are appended to a copy, keeping the trained codebooks; once the index no longer ``fits`` the size
    (a flat gallery outgrowing ``FLAT_MAX``), everything is rebuilt by ``build``."""
    import faiss

    if _parts(index)[1] is not None:
        index, copy = merged(index), False
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    if not fits(plan_of(index), int(index.ntotal) + len(rows), int(index.d)):
        return build(np.vstack([index.reconstruct_n(0, index.ntotal), rows]))
    grown = faiss.clone_index(index) if copy else index
    grown.add(rows)
    return grown


def removed(index: faiss.Index, positions: np.ndarray | list[int], copy: bool = True) -> faiss.Index:
    """A new index without the rows at ``positions``; the others keep their order (and shift down).
    A compressed index keeps its codebooks (no retraining) while it ``fits`` the size, then turns flat.
    ``copy`` False: ``index`` is searched by nobody yet and may be emptied and refilled in place."""
    import faiss

    if _parts(index)[1] is not None:
        index, copy = merged(index), False
    keep = np.ones(int(index.ntotal), dtype=bool)
    keep[np.asarray(positions, dtype=np.int64)] = False
    vectors = index.reconstruct_n(0, index.ntotal)[keep] if index.ntotal else np.zeros((0, index.d), np.float32)
    if not fits(plan_of(index), len(vectors), int(index.d)):
        return build(vectors)
    shrunk = faiss.clone_index(index) if copy else index
    shrunk.reset()
    if len(vectors):
        shrunk.add(vectors)
    return shrunk


def thread_count_keeper() -> Callable[[], None]:
    """What a new thread calls first to search and build with the OpenMP thread count of the thread that
    made it (``classifier.faiss_threads``, set on the main thread): OpenMP keeps the count per thread, and a
    new thread would use every core."""
    import faiss

    count = int(faiss.omp_get_max_threads())
    return lambda: faiss.omp_set_num_threads(count)


@contextmanager
def _threads(count: int) -> Iterator[None]:
    import faiss

    before = int(faiss.omp_get_max_threads())
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
