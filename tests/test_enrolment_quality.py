"""The blog guide's enrolment checks in full (issue 24.6): pose, contrast and back-light, each with its reason.

Real photos (the bundled LFW sample), a real profile view from the bundled clip, real models; the light
problems are made from a real photo the way they happen: the face darkened against a bright window,
the whole photo washed out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from classifier_service.gallery.enrolment import check_photo
from facewire.config import GallerySettings, ModelSettings
from facewire.faces import FaceAnalyzer, create_analyzer
from facewire.images import load_image
from harness.processes import SAMPLE, run_module

KNOWN = SAMPLE / "lfw" / "known"
POLICY = GallerySettings()


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return create_analyzer(ModelSettings(), det_threshold=0.6, min_face=20)


PORTRAIT = KNOWN / "Tony_Blair" / "Tony_Blair_0011.jpg"  # one face, well lit, frontal


def portrait() -> np.ndarray:
    return load_image(PORTRAIT)


def test_a_face_in_shadow_against_a_bright_background_is_refused_as_back_lit(analyzer: FaceAnalyzer) -> None:
    image = portrait()
    assert check_photo(analyzer, image, POLICY).accepted
    face = max(analyzer.faces(image), key=lambda f: f.size)
    x, y, w, h = (int(v) for v in face.detection.bbox)
    lit = np.minimum(image.astype(np.float32) + 120, 255)
    lit[y : y + h, x : x + w] = image[y : y + h, x : x + w] * 0.35
    check = check_photo(analyzer, lit.astype(np.uint8), POLICY)
    assert not check.accepted and check.reason.startswith("back-lit"), check.reason


def test_a_washed_out_photo_is_refused_for_low_contrast(analyzer: FaceAnalyzer) -> None:
    faded = (portrait().astype(np.float32) * 0.2 + 100).astype(np.uint8)
    check = check_photo(analyzer, faded, POLICY)
    assert not check.accepted and check.reason.startswith("low contrast"), check.reason


def test_a_profile_view_is_refused_for_its_head_turn(analyzer: FaceAnalyzer) -> None:
    capture = cv2.VideoCapture(str(SAMPLE / "short_hamilton_clip.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 21)  # Lin-Manuel Miranda turned to his right (yaw about -1.2)
    ok, frame = capture.read()
    capture.release()
    assert ok
    face = max(analyzer.faces(frame), key=lambda f: f.size)
    x, y, w, h = (int(v) for v in face.detection.bbox)
    crop = frame[max(0, y - 20) : y + h + 20, max(0, x - 40) : x + w + 40]
    check = check_photo(analyzer, crop, POLICY)
    assert not check.accepted and check.reason.startswith("head turned away"), check.reason


def test_the_sample_photos_pass_the_new_checks(analyzer: FaceAnalyzer) -> None:
    new_reasons = ("head turned", "head tilted", "low contrast", "back-lit")
    for photo in sorted(KNOWN.glob("*/*.jpg")):
        check = check_photo(analyzer, load_image(photo), POLICY)
        assert not check.reason.startswith(new_reasons), (photo.name, check.reason, check.quality)


def test_the_cli_reports_each_refusal_with_its_reason(analyzer: FaceAnalyzer, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PORTRAIT, photos / "good.jpg")
    cv2.imwrite(str(photos / "faded.jpg"), (portrait().astype(np.float32) * 0.2 + 100).astype(np.uint8))
    env = {"FACEWIRE_GALLERY__STORE_DIR": str(tmp_path / "store")}
    done = run_module("facewire_console", ["enroll", "Tony", str(photos), "--offline", "--json"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout)
    assert outcome["enrolled"] == 1
    assert [(Path(r["file"]).name, r["reason"].split(" (")[0]) for r in outcome["rejected"]] == [
        ("faded.jpg", "low contrast")
    ]
