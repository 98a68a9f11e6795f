"""The gallery index chosen by size: flat up to the limit, then a compressed scan with exact re-ranking.

The recall test builds a 60,000-row realistic gallery (real lfw-dev SFace embeddings among distractors
drawn from a model fitted to them, bench.face_distractors) so the compressed path runs on faces.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from bench import face_distractors
from classifier_service import index_choice
from classifier_service.gallery.index_file import load_index, save_index
from classifier_service.index_choice import FLAT_MAX, IndexPlan
from classifier_service.matcher import Matcher

DIM = 128
COMPRESSED = IndexPlan("pq-refine", DIM // 2, index_choice.K_FACTOR)


def random_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def codebook(index: faiss.Index) -> np.ndarray:
    refine = faiss.downcast_index(index)
    assert isinstance(refine, faiss.IndexRefine)
    base = faiss.downcast_index(refine.base_index)
    assert isinstance(base, faiss.IndexPQFastScan)
    return faiss.vector_to_array(base.pq.centroids)


def top1(index: faiss.Index, probes: np.ndarray) -> np.ndarray:
    return index.search(probes, 5)[1][:, 0]


def test_the_kind_follows_the_gallery_size() -> None:
    assert index_choice.choose(0, DIM).kind == "flat"
    assert index_choice.choose(FLAT_MAX, DIM).kind == "flat"
    assert index_choice.choose(FLAT_MAX + 1, DIM) == COMPRESSED
    assert index_choice.choose(1_000_000, DIM) == COMPRESSED
    assert index_choice.choose(1_000_000, 127).kind == "flat"  # 2-d sub-quantisers need an even dimension
    assert index_choice.plan_of(index_choice.build(random_rows(10, 0))) == IndexPlan("flat")
    assert index_choice.plan_of(index_choice.build(random_rows(2000, 0), COMPRESSED)) == COMPRESSED


def test_an_empty_gallery_is_a_flat_index() -> None:
    matcher = Matcher(np.zeros((0, 0), dtype=np.float32), [], 0.5)
    assert index_choice.plan_of(matcher.index).kind == "flat"
    assert matcher.match(random_rows(2, 0))[0].name == "unknown"


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """As the classifier runs (classifier.faiss_threads 1): OpenMP spinning on a busy 2-core machine
    makes training many times slower."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def compressed() -> tuple[np.ndarray, faiss.Index]:
    rows = random_rows(FLAT_MAX + 1000, 1)
    return rows, index_choice.build(rows)


def test_adds_and_removes_give_new_indexes_and_keep_the_codebooks(
    compressed: tuple[np.ndarray, faiss.Index],
) -> None:
    rows, served = compressed
    n = len(rows)
    extra = random_rows(10, 9)
    grown = index_choice.added(served, extra)
    assert (served.ntotal, grown.ntotal) == (n, n + 10)  # the served index is not touched
    np.testing.assert_array_equal(codebook(grown), codebook(served))
    assert (top1(grown, extra) == np.arange(n, n + 10)).all()
    shrunk = index_choice.removed(grown, [0, 5, n + 2])
    assert shrunk.ntotal == n + 7
    np.testing.assert_array_equal(codebook(shrunk), codebook(served))
    kept = np.delete(np.vstack([rows, extra]), [0, 5, n + 2], axis=0)
    np.testing.assert_array_equal(shrunk.reconstruct_n(0, n + 7), kept)  # the rest shift down, in order
    assert (top1(shrunk, kept[[4, n + 6]]) == [4, n + 6]).all()


def test_appended_rows_wait_beside_the_shared_index_then_merge(compressed: tuple[np.ndarray, faiss.Index]) -> None:
    """New rows are searched in a small exact part beside the served index, which is shared, not copied (nor
    changed); positions continue, the file and removes see one index, and past the share they merge."""
    rows, served = compressed
    n, extra = len(rows), random_rows(30, 11)
    two = index_choice.appended(index_choice.appended(served, extra[:20]), extra[20:])
    assert isinstance(two, faiss.IndexShards) and served.ntotal == n and two.ntotal == n + 30
    assert (top1(two, extra) == np.arange(n, n + 30)).all() and (top1(two, rows[:50]) == top1(served, rows[:50])).all()
    assert index_choice.plan_of(two) == COMPRESSED
    one = index_choice.merged(two)
    np.testing.assert_array_equal(one.reconstruct_n(n, 30), extra)
    np.testing.assert_array_equal(codebook(one), codebook(served))
    shrunk = index_choice.removed(two, [0, n + 1])
    assert shrunk.ntotal == n + 28 and (top1(shrunk, extra[[0, 2]]) == [n - 1, n]).all()
    waiting = int(max(index_choice.RECENT_MIN, index_choice.RECENT_SHARE * n))
    full = index_choice.appended(served, random_rows(waiting + 1, 12))
    assert not isinstance(full, faiss.IndexShards) and full.ntotal == n + waiting + 1


def test_a_gallery_crossing_the_flat_limit_changes_kind(compressed: tuple[np.ndarray, faiss.Index]) -> None:
    rows, index = compressed
    flat = index_choice.build(rows[:FLAT_MAX])
    assert index_choice.plan_of(flat).kind == "flat"
    assert index_choice.plan_of(index_choice.added(flat, rows[FLAT_MAX : FLAT_MAX + 1])) == COMPRESSED
    below = index_choice.removed(index, np.arange(1000, 2000))
    assert index_choice.plan_of(below) == COMPRESSED  # kept down to half the limit: no rebuild at every change
    half = index_choice.removed(index, np.arange(FLAT_MAX // 2 + 1000))
    assert index_choice.plan_of(half).kind == "flat"
    np.testing.assert_array_equal(half.reconstruct_n(0, half.ntotal), rows[FLAT_MAX // 2 + 1000 :])


@pytest.fixture(scope="module")
def realistic(shared_data: Path) -> tuple[face_distractors.RealFaces, np.ndarray, list[str]]:
    """lfw-dev's enrolled photos among distractors: 60,000 rows."""
    real = face_distractors.load_real(shared_data / "lfw-dev")
    extra = 60_000 - len(real.enrolled)
    fake = face_distractors.fit(real).sample(extra, seed=7)
    labels = real.enrolled_people + [f"d{i // face_distractors.PHOTOS_PER_DISTRACTOR}" for i in range(extra)]
    return real, np.vstack([real.enrolled, fake]), labels


@pytest.fixture(scope="module")
def realistic_index(realistic: tuple[face_distractors.RealFaces, np.ndarray, list[str]]) -> faiss.Index:
    return index_choice.build(realistic[1])


def test_recall_on_a_realistic_gallery_of_60k(
    realistic: tuple[face_distractors.RealFaces, np.ndarray, list[str]], realistic_index: faiss.Index
) -> None:
    real, vectors, labels = realistic
    assert index_choice.plan_of(realistic_index) == COMPRESSED
    probes = np.vstack([real.probes, real.strangers])
    exact = index_choice.build(vectors, IndexPlan("flat"))
    found = realistic_index.search(probes, 5)
    truth = exact.search(probes, 5)
    assert np.mean(found[1][:, 0] == truth[1][:, 0]) >= 0.99
    hit = found[1][:, 0] == truth[1][:, 0]
    np.testing.assert_allclose(found[0][hit, 0], truth[0][hit, 0], atol=1e-5)  # re-ranked: exact scores
    matcher = Matcher(None, labels, 0.48, index=realistic_index)
    named = matcher.match(real.probes[:50])
    assert np.mean([m.candidates[0].name == p for m, p in zip(named, real.probe_people, strict=False)]) >= 0.9


def test_the_index_file_round_trip_keeps_the_kind(tmp_path: Path, realistic_index: faiss.Index) -> None:
    ids = list(range(1, realistic_index.ntotal + 1))
    save_index(tmp_path, realistic_index, ids, "v1")
    loaded = load_index(tmp_path, ids, "v1")
    assert loaded is not None and index_choice.plan_of(loaded) == COMPRESSED
    probes = realistic_index.reconstruct_n(100, 20)
    np.testing.assert_array_equal(top1(loaded, probes), np.arange(100, 120))


def test_an_index_file_of_the_wrong_kind_for_its_size_is_rebuilt(
    tmp_path: Path, compressed: tuple[np.ndarray, faiss.Index]
) -> None:
    rows = compressed[0]
    ids = list(range(len(rows)))
    save_index(tmp_path, index_choice.build(rows, IndexPlan("flat")), ids, "v1")
    assert load_index(tmp_path, ids, "v1") is None  # a flat file of a gallery grown past the limit
