"""Cohort normalisation (issue 23): the classifier's rule, the bench's rule and their fit, on real embeddings.

The sample photos (data/sample/lfw: 4 known people, 11 strangers) go through the real detector and SFace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.accuracy import Photo
from bench.calibration import CohortPrior, Rule, fit_prior
from bench.protocol_embed import Embedded
from bench.protocol_eval import Decision, score_probes
from classifier_service.matcher import Matcher, shipped_cohort
from classifier_service.quality import Cohort, cohort_for
from facewire.config import ClassifierSettings, ModelSettings, load_settings
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.models.registry import SFACE
from facewire_console.operator_cli import gallery_matcher
from tests.gallery_support import KNOWN, make_gallery, open_test_manager, photos

UNKNOWN_DIR = KNOWN.parent / "unknown"
COHORT = Cohort(weight=1.0, reference=0.08, prior=10.0)
THRESHOLD = 0.48


@pytest.fixture(scope="module")
def faces(analyzer: FaceAnalyzer) -> dict[str, tuple[str, np.ndarray]]:
    """Photo name -> (person, embedding of its largest face) for every sample photo with a face."""
    out = {}
    for folder in sorted([*KNOWN.iterdir(), *UNKNOWN_DIR.iterdir()]):
        for path in photos(folder):
            found = analyzer.analyze(load_image(path))
            if found and (face := max(found, key=lambda f: f.size)).embedding is not None:
                out[f"{folder.name}/{path.name}"] = (folder.name, face.embedding)
    return out


def split(faces: dict[str, tuple[str, np.ndarray]]) -> tuple[list[str], list[str]]:
    """Enrolled: the first photo of every person (known and stranger folders alike, for a larger cohort);
    probes: every other photo."""
    enrolled: list[str] = []
    probes: list[str] = []
    seen: set[str] = set()
    for key, (person, _) in faces.items():
        (probes if person in seen else enrolled).append(key)
        seen.add(person)
    return enrolled, probes


def test_the_classifier_raises_the_score_needed_exactly_as_the_bench_rule(
    faces: dict[str, tuple[str, np.ndarray]],
) -> None:
    enrolled, probes = split(faces)
    assert len(enrolled) >= 10 and len(probes) >= 10
    vectors = np.stack([faces[k][1] for k in enrolled])
    labels = [faces[k][0] for k in enrolled]
    matcher = Matcher(vectors, labels, THRESHOLD, top_k=len(labels), cohort=COHORT)
    plain = Matcher(vectors, labels, THRESHOLD, top_k=len(labels), cohort=Cohort())
    probe_vectors = np.stack([faces[k][1] for k in probes])
    matches, plain_matches = matcher.match(probe_vectors), plain.match(probe_vectors)

    photo = {k: Photo(faces[k][0], Path(k), k, True) for k in faces}
    embedded = {k: Embedded({"plain": v}) for k, (_, v) in faces.items()}
    bench = score_probes(
        [photo[k] for k in enrolled],
        [photo[k] for k in probes],
        embedded,
        embedded,
        lambda a, b: a @ b.T,
        Decision(centroid=True, cohort="mean"),
    )
    rule = Rule(THRESHOLD, cohort=(COHORT.weight, 0.0, 0.0), prior=CohortPrior(COHORT.reference, COHORT.prior))
    rise = bench.scores - rule.adjusted(bench)  # what the bench's rule asks of each probe over the threshold
    assert np.allclose([m.threshold - THRESHOLD for m in matches], rise, atol=1e-5)
    assert np.allclose([m.score for m in matches], [m.score for m in plain_matches])  # the score is untouched
    assert all(m.threshold == THRESHOLD for m in plain_matches)
    assert np.ptp(rise) > 0.02  # faces differ in how much they resemble everyone: the rule is not a constant
    assert [m.known for m in matches] == list(rule.adjusted(bench) >= THRESHOLD)


def test_a_face_that_resembles_everyone_needs_more_and_a_small_gallery_moves_it_less(
    faces: dict[str, tuple[str, np.ndarray]],
) -> None:
    enrolled, probes = split(faces)
    vectors = np.stack([faces[k][1] for k in enrolled])
    labels = [faces[k][0] for k in enrolled]
    matcher = Matcher(vectors, labels, THRESHOLD, top_k=len(labels), cohort=COHORT)
    colin = next(faces[k][1] for k in probes if faces[k][0] == "Colin_Powell")
    everyone = vectors.mean(axis=0)  # a direction close to every enrolled face
    generic = colin + 0.8 * everyone / np.linalg.norm(everyone)
    generic /= np.linalg.norm(generic)
    own, blended = matcher.match(np.stack([colin, generic]))
    assert own.name == blended.name == "Colin_Powell"
    assert blended.threshold > own.threshold + 0.05
    # the same faces against a gallery of 3 people: the mean of 2 others is shrunk hard towards the reference
    few = [i for i, name in enumerate(labels) if name in ("Colin_Powell", "Tony_Blair", "Serena_Williams")]
    small = Matcher(vectors[few], [labels[i] for i in few], THRESHOLD, top_k=3, cohort=COHORT)
    small_own, small_blended = small.match(np.stack([colin, generic]))
    assert 0 < small_blended.threshold - small_own.threshold < blended.threshold - own.threshold
    alone = Matcher(vectors[:1], labels[:1], THRESHOLD, top_k=1, cohort=COHORT)
    assert alone.match(generic[None])[0].threshold == THRESHOLD  # no other person: no cohort


def test_the_prior_is_the_ratio_of_within_to_between_probe_variance() -> None:
    rng = np.random.default_rng(4)
    people, probes, within, between = 80, 4000, 0.09, 0.03
    level = rng.normal(0.08, between, size=(probes, 1))
    per_person = level + rng.normal(0, within, size=(probes, people))
    per_person[:, 0] += 0.5  # each probe's best person, left out of the cohort
    from bench.gallery_size import sub_scored  # a Scored of these scores, as the bench builds it

    template = score_probes(
        [Photo(f"p{i}", Path(f"g{i}"), f"g{i}", True) for i in range(people)],
        [Photo("x", Path(f"q{j}"), f"q{j}", False) for j in range(probes)],
        {f"g{i}": Embedded({"plain": np.eye(people)[i]}) for i in range(people)},
        {f"q{j}": Embedded({"plain": per_person[j]}) for j in range(probes)},
        lambda a, b: a @ b.T,
        Decision(centroid=True),
    )
    prior = fit_prior([sub_scored(template, np.arange(people))])
    assert prior.reference == pytest.approx(0.08, abs=0.005)
    assert prior.prior == pytest.approx((within / between) ** 2, rel=0.2)  # 9


def test_the_cohort_ships_off_and_turning_it_on_takes_the_registry_values() -> None:
    """Off by default (docs/accuracy.md: it lost a real video track of a 2-person gallery); the weight set,
    the reference and prior are the embedder's fitted ones."""
    fitted = SFACE.cohort
    assert fitted is not None and ModelSettings().embedder == SFACE.id
    assert shipped_cohort().weight == 0.0
    on = cohort_for(SFACE.id, ClassifierSettings(cohort_weight=fitted.weight))
    assert on == Cohort(fitted.weight, fitted.reference, fitted.prior)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert Matcher(vectors, [f"p{i}" for i in range(6)], THRESHOLD).cohort == shipped_cohort()


def test_an_embedder_without_fitted_values_gets_no_cohort_unless_configured() -> None:
    assert cohort_for("clip-vit-b32", ClassifierSettings(cohort_weight=None)) == Cohort()  # no fitted values
    conf = ClassifierSettings(cohort_weight=0.5)
    assert cohort_for("clip-vit-b32", conf) == Cohort(weight=0.5)  # set explicitly: applied to any embedder
    assert cohort_for(SFACE.id, ClassifierSettings(cohort_weight=0.0)).weight == 0.0  # configured off wins


def test_the_configured_cohort_reaches_the_gallery_matcher_and_identify_on_a_folder(
    analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    settings = load_settings(
        None,
        {
            "classifier": {"gallery": str(tmp_path / "g"), "cohort_weight": 0.5, "cohort_prior": 4.0},
            "gallery": {"store_dir": str(tmp_path / "store")},
        },
    )
    make_gallery(tmp_path / "g", {p: photos(KNOWN / p)[:1] for p in ("Tony_Blair", "Colin_Powell")})
    fitted = SFACE.cohort
    assert fitted is not None
    expected = Cohort(0.5, fitted.reference, 4.0)  # the reference not configured: the embedder's
    manager = open_test_manager(settings, analyzer)
    assert manager.matcher.cohort == expected and manager.cohort == expected
    assert gallery_matcher(settings, tmp_path / "g", "test").cohort == expected  # facewire identify --gallery
