"""Issue 23's levers: enrolment views and flip, the quality-aware and the gallery-size-aware threshold.

Real photos from data/sample and real models where a face is involved; the threshold rules on vectors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.calibration import nonnegative_fit
from classifier_service.core import Arrival, Classifier
from classifier_service.gallery.enrolment import check_photo
from classifier_service.matcher import UNKNOWN, Matcher
from classifier_service.quality import GALLERY_BETA, GALLERY_REFERENCE, gallery_margin, margin, shortfall
from facewire.config import GallerySettings
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from harness.processes import SAMPLE
from tests.test_schema import embedding, unit

KNOWN = SAMPLE / "lfw" / "known"
SLOPES = (0.05, 0.02, 0.08)


def test_enrolment_embeds_each_photo_at_the_camera_sizes_asked_for(analyzer: FaceAnalyzer) -> None:
    image = load_image(KNOWN / "Colin_Powell" / "Colin_Powell_0001.jpg")
    plain = check_photo(analyzer, image, GallerySettings())
    assert plain.accepted and plain.views == ()
    views = check_photo(analyzer, image, GallerySettings(enrol_face_sizes=(24, 36, 400)))
    assert [tag for tag, _ in views.views] == ["s24", "s36"]  # never larger than the photo's own face
    assert np.allclose(views.vector, plain.vector, atol=1e-5)
    for _tag, vector in views.views:
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-4
        assert 0.3 < float(vector @ plain.vector) < 0.99  # the same face, having lost detail
    flipped = check_photo(analyzer, image, GallerySettings(enrol_flip=True, enrol_face_sizes=(24,)))
    assert flipped.vector is not None and float(flipped.vector @ plain.vector) < 0.999
    assert float(flipped.vector @ plain.vector) > 0.8


def test_quality_shortfall_is_zero_for_a_good_face_and_grows_for_small_blurred_or_turned_ones() -> None:
    assert shortfall({"size": 100, "sharpness": 150, "yaw": 0.0}) == (0.0, 0.0, 0.0)
    assert shortfall({}) == (0.0, 0.0, 0.0)  # an embedding sent without quality measures
    small, blurred, turned = shortfall({"size": 24}), shortfall({"sharpness": 15}), shortfall({"yaw": -0.45})
    assert 0.6 < small[0] < 0.8 and blurred[1] > 0.8 and turned[2] == pytest.approx(0.75)
    assert shortfall({"size": 8, "sharpness": 1, "yaw": 3})[:3] == (1.0, 1.0, 1.0)
    good = margin({"size": 100, "sharpness": 150, "yaw": 0.0}, SLOPES)
    assert good == 0.0 < margin({"size": 24, "sharpness": 150}, SLOPES) < margin({"size": 24, "yaw": 0.5}, SLOPES)


def test_the_score_needed_rises_for_a_small_turned_face_in_the_classifier() -> None:
    vectors = np.stack([unit(seed=1), unit(seed=2)])
    matcher = Matcher(vectors, ["ada", "bob"], threshold=0.5, top_k=2)
    probe = 0.6 * unit(seed=1) + 0.8 * unit(seed=9)  # cosine ~0.6 with ada: named when the face is good
    probe /= np.linalg.norm(probe)
    classifier = Classifier(matcher, "sface-2021dec", "v1", dim=128, quality_slopes=SLOPES)
    good = embedding(seq=1, emb=probe, quality={"size": 90.0, "sharpness": 140.0, "yaw": 0.0})
    poor = embedding(seq=2, emb=probe, quality={"size": 22.0, "sharpness": 30.0, "yaw": 0.5})
    named, unnamed = classifier.classify([Arrival(good, 0.0), Arrival(poor, 0.0)])
    assert named.name == "ada" and named.threshold == 0.5  # type: ignore[union-attr]
    assert unnamed.name == UNKNOWN and unnamed.threshold > named.score  # type: ignore[union-attr]
    assert unnamed.threshold == pytest.approx(0.5 + margin(poor.quality, SLOPES))  # type: ignore[union-attr]


def test_the_threshold_rises_with_the_log_of_the_people_enrolled() -> None:
    assert gallery_margin(10) == gallery_margin(GALLERY_REFERENCE) == 0.0  # small galleries: the calibrated one
    assert gallery_margin(GALLERY_REFERENCE * 10) == pytest.approx(GALLERY_BETA * math.log(10))
    assert gallery_margin(100_000) - gallery_margin(10_000) == pytest.approx(GALLERY_BETA * math.log(10))
    # FPIR = 1 - (1 - FMR)^N with an exponential pair tail FMR(t) = c exp(-t / beta): the rule holds FPIR
    fmr = lambda t: 1e-3 * math.exp(-(t - 0.48) / GALLERY_BETA)  # noqa: E731
    fpir = [1 - (1 - fmr(0.48 + gallery_margin(n))) ** n for n in (GALLERY_REFERENCE, 1_000, 100_000)]
    assert max(fpir) / min(fpir) < 1.1
    rng = np.random.default_rng(0)
    big = rng.normal(size=(800, 16)).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    few = Matcher(big[:10], [f"p{i}" for i in range(10)], threshold=0.5)
    many = Matcher(big, [f"p{i}" for i in range(800)], threshold=0.5)
    assert few.needed == 0.5 and many.needed == pytest.approx(0.5 + GALLERY_BETA * math.log(10))
    assert many.match(big[:1])[0].threshold == pytest.approx(many.needed)


def test_quality_slopes_fit_is_non_negative_least_squares() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(500, 3))
    values = 0.2 + features @ np.array([0.1, 0.0, 0.05]) - 0.08 * features[:, 1] + rng.normal(scale=0.01, size=500)
    slopes = nonnegative_fit(features, values)
    assert slopes[1] == 0.0 and slopes[0] == pytest.approx(0.1, abs=0.01) and slopes[2] == pytest.approx(0.05, abs=0.01)
