"""Issue 11: probe degradations, threshold calibration and the protocol metrics; one slow run on lfw-dev."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.accuracy import Photo
from bench.calibration import calibrate, half_of, halves, offset_check, shipped_default
from bench.protocol_embed import Embedded
from bench.protocol_eval import Decision, Scored, score_probes, summarise
from bench.protocols import FRAME_SIZE, Protocol, degrade, paste_position, probe_key
from facewire.config import Settings, load_settings
from facewire.models.registry import SFACE, UNCALIBRATED_THRESHOLD, default_threshold
from harness.processes import run_module


def face_like(size: int = 250) -> np.ndarray:
    """A deterministic textured image (sharp edges, so blur and JPEG visibly change it)."""
    rng = np.random.default_rng(7)
    tile = rng.integers(0, 256, (size // 10, size // 10, 3), dtype=np.uint8)
    return cv2.resize(tile, (size, size), interpolation=cv2.INTER_NEAREST)


def test_probe_scale_pastes_the_shrunk_photo_into_a_640x360_frame_deterministically() -> None:
    image = face_like()
    frame = degrade(image, Protocol(probe_scale=0.35), key="abc")
    assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    x, y = paste_position("abc", (88, 88))  # round(250 * 0.35) = 88
    small = cv2.resize(image, (88, 88), interpolation=cv2.INTER_AREA)
    assert np.array_equal(frame[y : y + 88, x : x + 88], small)
    outside = frame.copy()
    outside[y : y + 88, x : x + 88] = 118
    assert (outside == 118).all()  # nothing but the background elsewhere
    assert np.array_equal(frame, degrade(image, Protocol(probe_scale=0.35), key="abc"))
    positions = {paste_position(str(i), (88, 88)) for i in range(20)}
    assert len(positions) > 15  # positions vary with the photo
    assert all(0 <= px <= 640 - 88 and 0 <= py <= 360 - 88 for px, py in positions)
    tiny = degrade(image, Protocol(probe_scale=0.22), key="abc")
    assert (tiny != 118).any(axis=2).sum() <= 55 * 55


def test_blur_and_jpeg_degrade_and_clean_is_untouched() -> None:
    image = face_like()
    assert np.array_equal(degrade(image, Protocol(), key="k"), image)

    def sharpness(img: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    assert sharpness(degrade(image, Protocol(blur=5), key="k")) < 0.5 * sharpness(image)
    assert sharpness(degrade(image, Protocol(blur=9), key="k")) < sharpness(degrade(image, Protocol(blur=5), key="k"))
    low = degrade(image, Protocol(jpeg_quality=10), key="k")
    high = degrade(image, Protocol(jpeg_quality=95), key="k")
    error = lambda out: float(np.abs(out.astype(int) - image.astype(int)).mean())  # noqa: E731
    assert error(low) > 2 * error(high) > 0


def test_protocol_names_and_validation() -> None:
    assert Protocol(1, probe_scale=0.22).name == "enrol1-s0.22"
    assert Protocol(5, blur=5, jpeg_quality=20).degradation == "blur5-q20"
    assert Protocol().name == "enrol5-clean"
    for bad in ({"blur": 4}, {"enroll_per_person": 0}, {"probe_scale": 2.0}, {"jpeg_quality": 101}):
        with pytest.raises(ValueError):
            Protocol(**bad)  # type: ignore[arg-type]
    assert probe_key("a" * 64, "s0.35") != probe_key("a" * 64, "s0.22") != probe_key("b" * 64, "s0.22")


def test_calibration_on_synthetic_scores_holds_its_far_on_fresh_impostors() -> None:
    rng = np.random.default_rng(1)
    calibration = [rng.normal(0.1, 0.1, 5000), rng.normal(0.1, 0.1, 5000)]
    threshold = calibrate(calibration, far=1e-3)
    assert 0.1 + 0.1 * 2.9 < threshold < 0.1 + 0.1 * 3.3  # the 1e-3 upper quantile of N(0.1, 0.1) is 0.409
    fresh = rng.normal(0.1, 0.1, 100_000)
    assert float(np.mean(fresh >= threshold)) < 2e-3
    assert shipped_default([0.401, 0.412]) == 0.41
    assert shipped_default([0.40, 0.40]) == 0.40


def test_halves_split_people_not_photos() -> None:
    photos = [Photo(f"p{i % 50}", Path(f"{i}.jpg"), f"{i:064x}", i % 3 == 0) for i in range(300)]
    split = halves(photos)
    people = [{p.person for p in group} for group in split.values()]
    assert people[0] and people[1] and not people[0] & people[1]
    assert all(half_of(p.person) == h for h, group in split.items() for p in group)


def test_open_set_metrics_count_misses_wrong_and_reject_small_faces() -> None:
    basis = np.eye(4, dtype=np.float32)
    enrolled = [Photo("ann", Path("a1"), "a1", True), Photo("bob", Path("b1"), "b1", True)]
    probes = [
        Photo("ann", Path("a2"), "a2", True),
        Photo("bob", Path("b2"), "b2", True),
        Photo("bob", Path("b3"), "b3", True),  # no face found
        Photo("eve", Path("e1"), "e1", False),
    ]
    q = np.array([40.0, 100.0, 0.0, 0.9], dtype=np.float32)
    gallery = {"a1": Embedded({"plain": basis[0]}), "b1": Embedded({"plain": basis[1]})}
    found = {
        "a2": Embedded({"plain": basis[0]}, q),
        "b2": Embedded({"plain": (basis[1] + basis[2]) / np.sqrt(2)}, q * [0.3, 1, 1, 1]),  # 12 px
        "b3": Embedded(None),
        "e1": Embedded({"plain": basis[3]}, q),
    }
    scored = score_probes(enrolled, probes, gallery, found, lambda a, b: a @ b.T, Decision())
    result = summarise(scored, threshold=0.5)
    assert result["known_missed"] == 1 and result["rank1"] == pytest.approx(2 / 3)
    assert result["known_correct_at_threshold"] == pytest.approx(2 / 3)
    assert result["unknown_rejected_at_threshold"] == 1.0
    strict = summarise(scored, threshold=0.8)
    assert strict["known_correct_at_threshold"] == pytest.approx(1 / 3)  # bob's 0.71 is below 0.8
    rejecting = summarise(
        score_probes(enrolled, probes, gallery, found, lambda a, b: a @ b.T, Decision(min_quality=20)), 0.5
    )
    assert rejecting["unidentifiable"] == 1 and rejecting["known_correct_at_threshold"] == pytest.approx(1 / 3)


def test_classifier_uses_the_models_calibrated_default_unless_configured() -> None:
    assert Settings().classifier.threshold is None
    assert Settings().classifier_threshold() == SFACE.default_threshold == default_threshold(SFACE.id)
    assert default_threshold("/some/exported-clip.onnx") == UNCALIBRATED_THRESHOLD
    assert load_settings(None, {"classifier": {"threshold": 0.61}}).classifier_threshold() == 0.61


@pytest.mark.slow
def test_protocol_bench_on_a_small_lfw_dev_subset(shared_data: Path, tmp_path: Path) -> None:
    env = {"FACEWIRE_BENCH_DIR": str(tmp_path)}
    dataset = str(shared_data / "lfw-dev")
    args = ["--dataset", dataset, "--limit-people", "3", "--enroll-per-person", "1", "--probe-scale", "0.35"]
    result = run_module("facewire_console", ["bench", "accuracy", *args, "--no-peer"], env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "results" / "accuracy_protocols_subset.json").read_text())
    numbers = data["systems"][0]["protocols"]["enrol1-s0.35"]
    assert numbers["known_probes"] > 10 and numbers["unknown_probes"] == 3
    assert numbers["rank1"] > 0.8  # ~30 px faces of 3 people are still told apart
    assert data["peer_skipped"] and "enrol1-s0.35" in (tmp_path / "BENCHMARKS.md").read_text()


def test_classifier_matcher_scores_people_by_centroid_like_the_bench() -> None:
    from classifier_service.matcher import Matcher

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 32))
    labels = [f"p{i % 6}" for i in range(30)]
    gallery = np.stack([centres[i % 6] + rng.normal(scale=0.8, size=32) for i in range(30)]).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    probes = np.stack([centres[i % 6] + rng.normal(scale=0.9, size=32) for i in range(40)]).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    matches = Matcher(gallery, labels, threshold=0.3, top_k=30).match(probes)
    enrolled = [Photo(name, Path(f"g{i}"), f"g{i}", True) for i, name in enumerate(labels)]
    probe_photos = [Photo(f"p{i % 6}", Path(f"q{i}"), f"q{i}", True) for i in range(40)]
    embedded = {f"g{i}": Embedded({"plain": v}) for i, v in enumerate(gallery)}
    embedded |= {f"q{i}": Embedded({"plain": v}) for i, v in enumerate(probes)}
    bench = score_probes(enrolled, probe_photos, embedded, embedded, lambda a, b: a @ b.T, Decision(centroid=True))
    assert [m.candidates[0].name for m in matches] == bench.names
    assert np.allclose([m.candidates[0].score for m in matches], bench.scores, atol=1e-5)
    nearest = Matcher(gallery, labels, threshold=0.3, top_k=30, centroid=False).match(probes)
    assert any(abs(a.score - b.score) > 1e-3 for a, b in zip(matches, nearest, strict=True))


def synthetic_scored(photos: list[Photo], decision: Decision) -> list[Scored]:
    """One protocol: each photo a probe; known probes score ~0.55 as their person, strangers ~N(0.1, 0.1); with
    ``flip`` the strangers of half A of the main split score 0.03 more, so a threshold fitted on one half
    transfers badly to the other and the rule names more strangers than it was fitted for."""
    seed = int.from_bytes(hashlib.sha256("".join(p.person for p in photos).encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed)
    known = np.array([p.known for p in photos])
    shift = np.array([0.03 if decision.flip and half_of(p.person) == "A" else 0.0 for p in photos])
    scores = np.where(known, rng.normal(0.55, 0.1, len(photos)), rng.normal(0.1, 0.1, len(photos)) + shift)
    n = len(photos)
    return [
        Scored(
            names=[p.person for p in photos],
            scores=scores,
            known=known,
            correct=known.copy(),
            unidentifiable=np.zeros(n, dtype=bool),
            sizes=np.full(n, 100.0),
            shortfall=np.zeros((n, 3)),
            people=sorted({p.person for p in photos if p.known}),
            per_person=np.zeros((n, 1)),
            truth=[p.person for p in photos],
            cohort=np.zeros((n, 3)),
        )
    ]


def test_the_matched_offset_is_the_smallest_raise_naming_no_more_strangers_than_the_first_rule() -> None:
    photos = [Photo(f"p{i}", Path(f"{i}.jpg"), f"{i:064x}", i % 4 == 0) for i in range(8000)]
    found = offset_check(photos, synthetic_scored, [Decision(), Decision(flip=True)], salts=("",))
    first, rows, matched = found["first"], found["offsets"], found["matched"]
    assert found["splits"] == ["main"] and first["strangers"] == 6000
    named = [r["strangers_named"] for r in rows]
    assert named == sorted(named, reverse=True)  # a higher threshold names no more strangers
    assert rows[0]["strangers_named"] > first["strangers_named"]  # the wider strangers' tail transfers worse
    assert matched is not None and matched["strangers_named"] <= first["strangers_named"]
    assert rows[rows.index(matched) - 1]["strangers_named"] > first["strangers_named"]
    same = offset_check(photos, synthetic_scored, [Decision(), Decision()], salts=("", "s1"))
    assert same["splits"] == ["main", "s1"] and same["first"]["strangers"] == 2 * 6000
    assert same["matched"]["offset"] == 0.0 and same["matched"]["gained"] == same["matched"]["lost"] == 0
