"""Real models on real photos: folding, alignment, embeddings, detection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.config import ModelSettings
from facewire.errors import ImageError, ModelError
from facewire.faces import FaceAnalyzer
from facewire.images import load_image
from facewire.models.align import align_face, similarity_transform
from facewire.models.registry import SFACE, ModelFile, folded_model, package_file


def largest_embedding(analyzer: FaceAnalyzer, path: Path) -> np.ndarray:
    faces = analyzer.analyze(load_image(path))
    assert faces, f"no face in {path}"
    embedding = max(faces, key=lambda f: f.size).embedding
    assert embedding is not None
    return embedding


def test_alignment_gives_112_square_and_maps_landmarks_onto_template(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    image = load_image(sample_dir / "lfw/known/Colin_Powell/Colin_Powell_0001.jpg")
    detection = max(analyzer.detector.detect(image), key=lambda d: d.bbox[2])
    assert detection.landmarks is not None
    crop = align_face(image, detection.landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    matrix = similarity_transform(detection.landmarks.astype(np.float64), np.eye(5, 2) * 0 + detection.landmarks)
    assert np.allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-4)


def test_same_person_is_closer_than_another_person(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    known = sample_dir / "lfw" / "known"
    powell = sorted((known / "Colin_Powell").iterdir())
    blair = sorted((known / "Tony_Blair").iterdir())
    a, b, other = (largest_embedding(analyzer, p) for p in (powell[0], powell[1], blair[0]))
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    assert float(a @ b) > 0.5 > float(a @ other)


def test_onnxruntime_embedder_matches_opencv_on_the_original_int8_model(
    analyzer: FaceAnalyzer, sample_dir: Path
) -> None:
    image = load_image(sample_dir / "lfw/known/Serena_Williams/Serena_Williams_0001.jpg")
    face = max(analyzer.analyze(image), key=lambda f: f.size)
    recognizer = cv2.FaceRecognizerSF.create(str(package_file(SFACE.file)), "")
    reference = recognizer.feature(face.crop).ravel()
    reference /= np.linalg.norm(reference)
    assert face.embedding is not None and float(reference @ face.embedding) > 0.9999


def test_folded_model_is_cached_and_reverified(tmp_path: Path) -> None:
    first = folded_model(SFACE.file, tmp_path, dynamic_batch=True)
    stamp = first.stat().st_mtime_ns
    assert folded_model(SFACE.file, tmp_path, dynamic_batch=True).stat().st_mtime_ns == stamp
    first.write_bytes(b"corrupt")
    repaired = folded_model(SFACE.file, tmp_path, dynamic_batch=True)
    assert repaired.stat().st_size > 30_000_000


def test_wrong_checksum_and_missing_package_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="checksum mismatch"):
        package_file(ModelFile(SFACE.file.package, SFACE.file.relative, "0" * 64))
    with pytest.raises(ModelError, match="not installed"):
        package_file(ModelFile("no_such_package_facewire", "x.onnx", "0" * 64))


def test_batch_embedding_equals_one_by_one(analyzer: FaceAnalyzer, sample_dir: Path) -> None:
    crops = [
        max(analyzer.faces(load_image(p)), key=lambda f: f.size).crop
        for p in sorted((sample_dir / "lfw/known/Tony_Blair").iterdir())[:3]
    ]
    batch = analyzer.embedder.embed(crops)
    single = np.concatenate([analyzer.embedder.embed([c]) for c in crops])
    assert batch.shape == (3, 128) and np.allclose(batch, single, atol=1e-4)


def test_corrupt_and_non_images_are_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "text.jpg").write_text("hello")
    for name in ("broken.jpg", "text.jpg", "absent.jpg"):
        with pytest.raises(ImageError):
            load_image(tmp_path / name)


def test_model_settings_default_is_sface() -> None:
    assert ModelSettings().embedder == SFACE.id
