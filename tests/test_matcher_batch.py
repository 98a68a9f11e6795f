"""The matcher decides a batch with arrays (issue 21): its decisions must be those of the plain per-probe rule.

The reference below is the rule written out face by face (the matcher's code before it was vectorised): the
nearest photos' people in rank order, each scored by their centroid (or their best photo), sorted, the score
needed raised by the face's margin and the cohort term, the first that reaches it and is not vetoed by a
negative example named. Real SFace embeddings of the sample photos (4 known people, 6 strangers), and probes
made from them (noisy copies and blends of two people, so that scores fall on both sides of the threshold).
"""

from __future__ import annotations

import numpy as np
import pytest

from classifier_service.matcher import UNKNOWN, Match, Matcher
from classifier_service.quality import Cohort
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.schema import Candidate
from tests.gallery_support import KNOWN, photos

STRANGERS = KNOWN.parent / "unknown"


@pytest.fixture(scope="module")
def faces(analyzer: FaceAnalyzer) -> list[tuple[str, np.ndarray]]:
    """(person, embedding of the largest face) of every sample photo with a face."""
    out = []
    for folder in sorted([*KNOWN.iterdir(), *STRANGERS.iterdir()]):
        for path in photos(folder):
            found = analyzer.analyze(load_image(path))
            if found and (face := max(found, key=lambda f: f.size)).embedding is not None:
                out.append((folder.name, np.asarray(face.embedding, dtype=np.float32)))
    return out


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def reference(matcher: Matcher, probes: np.ndarray, margins: np.ndarray) -> list[Match]:
    """The per-probe rule, face by face."""
    k = min(matcher.top_k, matcher.index.ntotal)
    scores, indexes = matcher.index.search(np.ascontiguousarray(probes, dtype=np.float32), k)
    rows = []
    for probe, row_scores, row_indexes in zip(probes, scores, indexes, strict=True):
        best: dict[str, float] = {}
        for score, index in zip(row_scores, row_indexes, strict=True):
            if index >= 0:
                name = matcher.labels[index]
                best[name] = max(best.get(name, -1.0), float(score))
        nearest = dict(best)
        if matcher._centroids:
            best = {name: float(matcher._centroids[name] @ probe) for name in best}
        rows.append((probe, best, nearest))
    extra = np.asarray(margins, dtype=np.float64)
    if matcher.cohort.weight and matcher._centroid_sum is not None:
        tops = np.array([max(best.values(), default=0.0) for _, best, _ in rows])
        extra = extra + matcher.cohort.margins(probes @ matcher._centroid_sum, tops, len(matcher._centroids))
    out = []
    for (probe, best, nearest), margin in zip(rows, extra, strict=True):
        needed = matcher.needed + float(margin)
        candidates = tuple(Candidate(n, s) for n, s in sorted(best.items(), key=lambda kv: -kv[1]))
        named = [c for c in candidates if c.score >= needed and not matcher._vetoed(probe, c.name, nearest[c.name])]
        chosen = named[0] if named else None
        if chosen is not None:
            out.append(Match(chosen.name, chosen.score, True, candidates, needed))
        else:
            out.append(Match(UNKNOWN, candidates[0].score, False, candidates, needed))
    return out


def same(ours: list[Match], theirs: list[Match]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.name, a.known) == (b.name, b.known)
        assert a.score == pytest.approx(b.score, abs=1e-6)
        assert a.threshold == pytest.approx(b.threshold, abs=1e-6)  # the cohort term sums float32 scores
        assert [c.name for c in a.candidates] == [c.name for c in b.candidates]
        assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates], abs=1e-6)


def probes_from(faces: list[tuple[str, np.ndarray]], seed: int) -> np.ndarray:
    """Every face, noisy copies of each and blends of two faces: scores on both sides of any threshold."""
    rng = np.random.default_rng(seed)
    vectors = np.stack([v for _, v in faces])
    noisy = unit(np.repeat(vectors, 4, axis=0) + rng.normal(0, 0.05, (4 * len(vectors), vectors.shape[1])))
    pairs = rng.integers(0, len(vectors), (200, 2))
    mix = rng.uniform(0.3, 0.7, (200, 1))
    blends = unit(mix * vectors[pairs[:, 0]] + (1 - mix) * vectors[pairs[:, 1]])
    return np.concatenate([vectors, noisy, blends]).astype(np.float32)


@pytest.mark.parametrize("centroid", [True, False])
@pytest.mark.parametrize("cohort", [Cohort(), Cohort(weight=1.0, reference=0.08, prior=10.0)])
@pytest.mark.parametrize("top_k", [5, 100])
def test_batch_decisions_equal_the_per_probe_rule(
    faces: list[tuple[str, np.ndarray]], centroid: bool, cohort: Cohort, top_k: int
) -> None:
    known = {person for person, _ in faces if (KNOWN / person).is_dir()}
    enrolled = [(p, v) for p, v in faces if p in known]  # every photo of a known person: repeats in the top k
    strangers = [(p, v) for p, v in faces if p not in known]
    # Negatives: blends of a known person's photo with a stranger's, "not" that person; they resemble the
    # person about as much as the probes do, so the veto turns on the nearest photo's exact score.
    vectors = np.stack([v for _, v in enrolled])
    labels = [p for p, _ in enrolled]
    rng = np.random.default_rng(7)
    rows = rng.integers(0, len(enrolled), 40)
    others = np.stack([strangers[i][1] for i in rng.integers(0, len(strangers), 40)])
    negatives = (unit(0.6 * vectors[rows] + 0.4 * others), [labels[i] for i in rows])
    probes = probes_from(faces, seed=top_k)
    margins = np.random.default_rng(1).uniform(0, 0.05, len(probes))
    for threshold in (0.3, 0.45):
        matcher = Matcher(
            vectors, labels, threshold, top_k=top_k, negatives=negatives, centroid=centroid, cohort=cohort
        )
        ours, theirs = matcher.match(probes, margins), reference(matcher, probes, margins)
        same(ours, theirs)
        assert {m.known for m in theirs} == {True, False}  # both outcomes are exercised
        plain = Matcher(vectors, labels, threshold, top_k=top_k, centroid=centroid, cohort=cohort)
        vetoed = sum(a.known and not b.known for a, b in zip(plain.match(probes, margins), theirs, strict=True))
        assert vetoed > 0  # the veto decided some faces
        same(plain.match(probes, margins), reference(plain, probes, margins))
    same(matcher.match(probes[:1]), reference(matcher, probes[:1], np.zeros(1)))  # no margins, one probe
