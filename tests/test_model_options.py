"""The model options beside the default: registry metadata, Haar, MediaPipe, Face Mesh mask, exported CLIP."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

from facewire.config import ModelSettings
from facewire.errors import ModelError
from facewire.faces import FaceAnalyzer, create_analyzer, create_embedder
from facewire.images import load_image
from facewire.models.detector import HaarDetector
from facewire.models.metadata import ExportMetadata, read_metadata
from facewire.models.registry import SFACE, exported_model, resolve_embedder, spec_from_metadata
from harness.processes import ROOT, run_module
from tests.model_support import need_mediapipe, need_torch, run_exporter, tiny_clip

PHOTO = "lfw/known/Colin_Powell/Colin_Powell_0001.jpg"
__all__ = ["tiny_clip"]  # a fixture


def settings(tmp_path: Path, **fields: str) -> ModelSettings:
    return ModelSettings(cache_dir=tmp_path / "cache", **fields)  # type: ignore[arg-type]


def test_metadata_round_trip_and_missing_keys_are_named() -> None:
    meta = ExportMetadata("clip-x-1234", "clip", 512, 224, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), revision="abc")
    back = ExportMetadata.from_props(meta.to_props(), "x.onnx")
    assert back == meta
    spec = spec_from_metadata(back)
    assert spec.mean == pytest.approx((127.5, 102.0, 76.5)) and spec.std == pytest.approx((51.0,) * 3)
    assert not spec.needs_alignment and spec.wants_mask and spec.rgb and spec.input_size == 224
    with pytest.raises(ModelError, match=r"facewire\.embedding_dim.*export-clip"):
        ExportMetadata.from_props({k: v for k, v in meta.to_props().items() if "dim" not in k}, "x.onnx")


def test_default_model_path_is_unchanged(tmp_path: Path) -> None:
    spec, path = resolve_embedder("sface-2021dec", tmp_path)
    assert spec is SFACE and path.name.startswith("face_recognition_sface_2021dec")
    assert ModelSettings().detector == "yunet" and ModelSettings().mask == "none"
    with pytest.raises(ModelError, match=r"unknown embedder 'nope'.*exported \.onnx"):
        resolve_embedder("nope", tmp_path)
    with pytest.raises(ModelError, match="model file not found"):
        resolve_embedder(str(tmp_path / "absent.onnx"), tmp_path)


def test_an_onnx_file_without_our_metadata_is_refused(tmp_path: Path) -> None:
    _spec, folded = resolve_embedder("sface-2021dec", tmp_path)
    with pytest.raises(ModelError, match="no facewire metadata"):
        resolve_embedder(str(folded), tmp_path)


def test_haar_finds_faces_without_landmarks_and_the_crop_rule_applies(tmp_path: Path, sample_dir: Path) -> None:
    image = load_image(sample_dir / PHOTO)
    detections = HaarDetector().detect(image)
    assert detections and all(d.landmarks is None and d.score == 1.0 for d in detections)
    x, y, w, h = max(detections, key=lambda d: d.bbox[2]).bbox
    assert 60 < x + w / 2 < 190 and 60 < y + h / 2 < 190  # LFW faces are centred in 250x250
    analyzer = create_analyzer(settings(tmp_path, detector="haar"), det_threshold=0.6, min_face=20)
    faces = analyzer.faces(image)
    assert faces and all(f.crop.shape == (112, 112, 3) for f in faces)
    assert analyzer.preparation == "haar+none+cubic"


def test_exported_tiny_clip_carries_metadata_manifest_and_dynamic_batch(tiny_clip: Path) -> None:
    for path in (tiny_clip, tiny_clip.with_suffix(".int8.onnx")):
        model = onnx.load(str(path))
        props = {p.key: p.value for p in model.metadata_props}
        for key in ("model_id", "embedding_dim", "mean", "std", "input_size", "revision", "export_date", "source"):
            assert props.get(f"facewire.{key}"), (path, key)
        assert props["facewire.input_size"] == "224" and props["facewire.revision"] == "random-seed-0"
        assert json.loads(props["facewire.mean"])[0] == pytest.approx(0.48145466)
        first_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert first_dim.dim_param == "N" and model.graph.input[0].name == "pixel_values"
    fp32, int8 = read_metadata(tiny_clip), read_metadata(tiny_clip.with_suffix(".int8.onnx"))
    assert int8.model_id == fp32.model_id + "-int8" and int8.variant == "int8"
    sums = (tiny_clip.parent / "SHA256SUMS").read_text().split()
    assert sums[1::2] == ["clip-tiny.onnx", "clip-tiny.int8.onnx"]


def test_exported_clip_embeds_in_batches_like_one_by_one(tiny_clip: Path, tmp_path: Path, sample_dir: Path) -> None:
    embedder = create_embedder(settings(tmp_path, embedder=str(tiny_clip)))
    assert embedder.model_id == read_metadata(tiny_clip).model_id and embedder.dim == 32
    crops = [
        np.asarray(load_image(sample_dir / PHOTO)[20:244, 13:237]),
        np.zeros((224, 224, 3), np.uint8),
        np.full((224, 224, 3), 200, np.uint8),
    ]
    batch = embedder.embed(crops)
    single = np.concatenate([embedder.embed([c]) for c in crops])
    assert batch.shape == (3, 32) and np.allclose(batch, single, atol=1e-5)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_a_tampered_export_fails_its_manifest(tiny_clip: Path, tmp_path: Path) -> None:
    copy = tmp_path / tiny_clip.name
    shutil.copy(tiny_clip, copy)
    shutil.copy(tiny_clip.parent / "SHA256SUMS", tmp_path / "SHA256SUMS")
    assert exported_model(copy)[0].family == "clip"
    with copy.open("r+b") as handle:
        handle.seek(-64, 2)
        handle.write(b"\0" * 8)
    with pytest.raises(ModelError, match="checksum mismatch"):
        exported_model(copy)


def test_exporter_reads_a_local_folder_of_weights(tmp_path: Path) -> None:
    """The path a user with real weights takes: from_pretrained on a folder (here written by save_pretrained)."""
    need_torch()
    folder = tmp_path / "weights"
    script = (  # a whole CLIP (text + vision) and its image processor, laid out as a hub snapshot is
        "import sys, torch, transformers as t; torch.manual_seed(7);"
        "v = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2);"
        "c = t.CLIPConfig(text_config=dict(v, vocab_size=99), vision_config=v, projection_dim=16);"
        "t.CLIPModel(c).save_pretrained(sys.argv[1]);"
        "t.CLIPImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(sys.argv[1])"
    )
    saved = run_module_code(script, folder)
    assert saved.returncode == 0, saved.stderr
    done = run_exporter([str(folder), "--output", str(tmp_path / "out"), "--name", "mine", "--no-int8"])
    assert done.returncode == 0, done.stdout + done.stderr
    parity = re.search(r"max abs diff (\S+), min cosine (\S+)", done.stdout)
    assert parity and float(parity.group(1)) < 1e-3 and float(parity.group(2)) > 0.9999
    meta = read_metadata(tmp_path / "out" / "mine.onnx")
    assert meta.embedding_dim == 16 and meta.revision.startswith("sha256:") and meta.source == str(folder)
    assert meta.mean == (0.5, 0.5, 0.5) and meta.std == (0.25, 0.25, 0.25) and meta.input_size == 224
    assert meta.model_id.startswith("mine-") and not (tmp_path / "out" / "mine.int8.onnx").exists()


def test_exporter_without_weights_fails_with_a_message(tmp_path: Path) -> None:
    need_torch()
    done = run_exporter([str(tmp_path / "no-such-folder"), "--output", str(tmp_path / "out")])
    assert done.returncode == 1 and "cannot load CLIP vision weights" in done.stderr
    assert "Traceback" not in done.stderr


def run_module_code(code: str, *args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def facemesh_analyzer(tiny_clip: Path, tmp_path: Path) -> Iterator[FaceAnalyzer]:
    need_mediapipe()
    analyzer = create_analyzer(
        settings(tmp_path, embedder=str(tiny_clip), detector="haar", mask="facemesh"), 0.6, min_face=20
    )
    yield analyzer


def test_facemesh_blacks_out_the_background_and_drops_non_faces(
    facemesh_analyzer: FaceAnalyzer, sample_dir: Path
) -> None:
    faces = facemesh_analyzer.analyze(load_image(sample_dir / PHOTO))
    assert len(faces) == 1
    crop = faces[0].crop
    assert crop.shape == (224, 224, 3)
    assert not crop[:12, :12].any() and not crop[-12:, -12:].any(), "corners are background: black"
    assert crop[100:124, 100:124].mean() > 30, "the face centre is kept"
    assert facemesh_analyzer.masker is not None
    assert facemesh_analyzer.masker.mask(np.full((224, 224, 3), 128, np.uint8))[1] is False


def test_mediapipe_detector_gives_yunet_ordered_landmarks(tmp_path: Path, sample_dir: Path) -> None:
    need_mediapipe()
    from facewire.models.mediapipe_faces import MediaPipeDetector

    detections = MediaPipeDetector(0.5).detect(load_image(sample_dir / PHOTO))
    assert len(detections) == 1 and detections[0].score > 0.5
    points = detections[0].landmarks
    assert points is not None and points.shape == (5, 2)
    assert points[0][0] < points[1][0] and points[3][0] < points[4][0], "image-left eye and mouth corner first"
    assert points[0][1] < points[2][1] < points[3][1], "eyes above nose above mouth"


def test_missing_mediapipe_is_an_install_hint_not_a_traceback(tmp_path: Path) -> None:
    """The edge CLI with mediapipe made unimportable (as on a machine without the extra)."""
    code = (
        "import sys; sys.modules['mediapipe'] = None; from edge_agent.cli import main;"
        "sys.argv = ['edge-agent', 'run', '--detector', 'mediapipe', '--source', sys.argv[1], '--once'];"
        "main()"
    )
    for flags in (["--detector", "mediapipe"], ["--mask", "facemesh"]):
        done = run_module_code(code.replace("'--detector', 'mediapipe'", repr(flags)[1:-1]), ROOT / "data/sample")
        assert done.returncode == 1, done.stderr
        assert "pip install" in done.stderr and "mediapipe==0.10.21" in done.stderr and "Traceback" not in done.stderr


def test_unknown_detector_is_refused_by_the_cli() -> None:
    done = run_module("edge_agent", ["run", "--detector", "dlib", "--once"], {})
    assert done.returncode == 2 and "dlib" in done.stderr
