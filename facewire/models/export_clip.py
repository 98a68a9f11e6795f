"""Export a CLIP image encoder (vision tower + projection) to ONNX, fp32 and dynamic int8.

``pixel_values [N,3,S,S] -> image_embeds [N,D]`` with a dynamic batch axis,
opset 17, the TorchScript exporter (``dynamo=False``: one self-contained file).
torch vs onnxruntime parity is checked on a batch and the export fails above
tolerance. The file carries its own metadata (``facewire.*`` metadata_props)
and a ``SHA256SUMS`` manifest is written beside it.

torch and transformers come from the optional ``export`` extra and are
imported only here, inside functions: nothing at run time needs them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from facewire import __version__
from facewire.errors import ModelError
from facewire.models.metadata import ExportMetadata, write_manifest, write_metadata

DEFAULT_SOURCE = "openai/clip-vit-base-patch32"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPSET = 17
# CLIPVisionConfig's defaults are exactly ViT-B/32 (768 wide, 12 layers, 12 heads, patch 32, 512-d projection).
RANDOM_CONFIGS: dict[str, dict[str, int]] = {
    "vit-b32": {},
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 32,
    },
}
INSTALL_HINT = "pip install 'facewire[export]' (torch==2.13.0, transformers, onnxscript)"


@dataclass
class LoadedModel:
    """A CLIP vision model in eval mode and where it came from."""

    model: Any
    source: str
    revision: str
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    size: int = 224


@dataclass
class ExportReport:
    """What an export wrote and how well the ONNX models agree with torch."""

    fp32: Path
    model_id: str
    max_abs_diff: float
    min_cosine: float
    int8: Path | None = None
    int8_min_cosine: float | None = None
    int8_mean_cosine: float | None = None
    manifest: Path | None = None
    sizes: dict[str, int] = field(default_factory=dict)


def _import(name: str) -> Any:
    """Import an optional export dependency (typed Any: the export extra may be absent where mypy runs)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModelError(f"exporting CLIP needs torch and transformers: {INSTALL_HINT} ({exc})") from exc


def _torch() -> Any:
    _import("transformers")
    return _import("torch")


def slug(source: str) -> str:
    """A file-name-safe short name: ``openai/clip-vit-base-patch32`` -> ``clip-vit-base-patch32``."""
    name = Path(source.rstrip("/")).name or "clip"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.").lower() or "clip"


def load_model(source: str, random_init: str | None = None, seed: int = 0) -> LoadedModel:
    """Load ``source`` (hub id or local folder), or build a randomly initialised model of a named config."""
    torch = _torch()
    transformers = _import("transformers")
    model_class = transformers.CLIPVisionModelWithProjection
    if random_init is not None:
        if random_init not in RANDOM_CONFIGS:
            raise ModelError(f"unknown random config {random_init!r}; known: {', '.join(RANDOM_CONFIGS)}")
        torch.manual_seed(seed)
        config = transformers.CLIPVisionConfig(**RANDOM_CONFIGS[random_init])
        model = model_class._from_config(config, attn_implementation="eager").eval()
        return LoadedModel(model, f"random-init:{random_init}", f"random-seed-{seed}")
    try:
        config = vision_config(transformers.AutoConfig.from_pretrained(source))
        model, info = model_class.from_pretrained(
            source, config=config, attn_implementation="eager", output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load CLIP vision weights from {source!r}: {exc}. "
            "Pass a local folder with config.json + model.safetensors (from save_pretrained or a hub snapshot)."
        ) from exc
    missing = list(info.get("missing_keys", [])) + [str(m) for m in info.get("mismatched_keys", [])]
    if missing:
        raise ModelError(f"{source!r} lacks CLIP vision weights (they would be random): {', '.join(missing[:5])}")
    loaded = LoadedModel(model.eval().float(), source, _revision(source, model), size=int(config.image_size))
    return _with_preprocessor(loaded, Path(source))


def vision_config(config: Any) -> Any:
    """The vision config of a CLIP checkpoint; from a whole CLIP (text + vision), with its projection size."""
    if hasattr(config, "vision_config"):
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        return vision
    return config


def _revision(source: str, model: Any) -> str:
    commit = getattr(model.config, "_commit_hash", None)
    if commit:
        return str(commit)
    folder = Path(source)
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not weights:
        return "unknown"
    return "sha256:" + hashlib.sha256("".join(sha256_of(path) for path in weights).encode()).hexdigest()[:16]


def _with_preprocessor(loaded: LoadedModel, folder: Path) -> LoadedModel:
    """Take mean/std/size from ``preprocessor_config.json`` when the folder has one."""
    config_file = folder / "preprocessor_config.json"
    if not config_file.is_file():
        return loaded
    data = json.loads(config_file.read_text())
    mean, std = data.get("image_mean", loaded.mean), data.get("image_std", loaded.std)
    crop = data.get("crop_size", loaded.size)
    size = int(crop.get("height", loaded.size)) if isinstance(crop, dict) else int(crop)
    return replace(loaded, mean=tuple(map(float, mean)), std=tuple(map(float, std)), size=size)  # type: ignore[arg-type]


def weights_digest(model: Any) -> str:
    """SHA-256 of every parameter and buffer, by name: identical weights give an identical id."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def export_onnx(loaded: LoadedModel, path: Path) -> None:
    """TorchScript-export ``pixel_values -> image_embeds`` with a dynamic batch axis at opset 17."""
    torch = _torch()

    module: Any = torch.nn.Module

    class ImageEmbeds(module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner(pixel_values=pixel_values).image_embeds

    dummy = torch.zeros(2, 3, loaded.size, loaded.size)
    with torch.no_grad(), warnings.catch_warnings():
        # The size check in CLIP's patch embedding is traced as a constant: right, the input size is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            ImageEmbeds(loaded.model).eval(),
            (dummy,),
            str(path),
            input_names=["pixel_values"],
            output_names=["image_embeds"],
            dynamic_axes={"pixel_values": {0: "N"}, "image_embeds": {0: "N"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def torch_embeds(loaded: LoadedModel, batch: np.ndarray) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return np.asarray(loaded.model(pixel_values=torch.from_numpy(batch)).image_embeds.numpy(), dtype=np.float32)


def onnx_embeds(path: Path, batch: np.ndarray, threads: int = 1) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"pixel_values": batch})[0], dtype=np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, np.ndarray]:
    """Max absolute difference and per-row cosine between two embedding batches."""
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # noqa: E731
    cosines = (unit(reference) * unit(candidate)).sum(axis=1)
    return float(np.abs(reference - candidate).max()), cosines


def parity_batch(size: int, count: int = 4, seed: int = 1234) -> np.ndarray:
    """Normalised-pixel inputs for the parity check: standard normal, like CLIP-normalised images."""
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


def quantize_int8(fp32: Path, int8: Path, unsigned: bool = False) -> None:
    """Dynamic int8 (weights int8, activations quantised at run time) with onnxruntime's quantizer."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a generic "consider pre-processing" hint on the root logger
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QUInt8 if unsigned else QuantType.QInt8)
    finally:
        root.setLevel(level)


def metadata_for(loaded: LoadedModel, model_id: str, dim: int) -> ExportMetadata:
    torch, transformers = _torch(), _import("transformers")
    return ExportMetadata(
        model_id=model_id,
        family="clip",
        embedding_dim=dim,
        input_size=loaded.size,
        mean=loaded.mean,
        std=loaded.std,
        source=loaded.source,
        revision=loaded.revision,
        export_date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        extra=(
            ("exporter", f"facewire {__version__}"),
            ("opset", str(OPSET)),
            ("torch", str(torch.__version__)),
            ("transformers", str(transformers.__version__)),
        ),
    )


def stamp(path: Path, metadata: ExportMetadata) -> None:
    """Write ``metadata`` into the ONNX file at ``path``."""
    model = onnx.load(str(path))
    write_metadata(model, metadata)
    onnx.save(model, str(path))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_clip(
    loaded: LoadedModel,
    output: Path,
    name: str | None = None,
    int8: bool = True,
    atol: float = 1e-3,
    min_cosine: float = 0.9999,
) -> ExportReport:
    """Export ``loaded`` into ``output``/NAME.onnx (+ NAME.int8.onnx), check parity, write metadata and SHA256SUMS."""
    output.mkdir(parents=True, exist_ok=True)
    name = name or slug(loaded.source.removeprefix("random-init:"))
    fp32 = output / f"{name}.onnx"
    export_onnx(loaded, fp32)
    batch = parity_batch(loaded.size)
    reference = torch_embeds(loaded, batch)
    max_abs, cosines = compare(reference, onnx_embeds(fp32, batch))
    if max_abs > atol or float(cosines.min()) < min_cosine:
        raise ModelError(
            f"ONNX export disagrees with torch: max abs diff {max_abs:.3g} (tolerance {atol:g}), "
            f"min cosine {float(cosines.min()):.6f} (tolerance {min_cosine:g})"
        )
    model_id = f"{name}-{weights_digest(loaded.model)[:8]}"
    metadata = metadata_for(loaded, model_id, int(reference.shape[1]))
    stamp(fp32, metadata)
    report = ExportReport(fp32, model_id, max_abs, float(cosines.min()))
    files = [fp32]
    if int8:
        report.int8 = output / f"{name}.int8.onnx"
        quantize_int8(fp32, report.int8)
        stamp(report.int8, replace(metadata, model_id=f"{model_id}-int8", variant="int8"))
        _, int8_cosines = compare(reference, onnx_embeds(report.int8, batch))
        report.int8_min_cosine, report.int8_mean_cosine = float(int8_cosines.min()), float(int8_cosines.mean())
        files.append(report.int8)
    digests = {path: sha256_of(path) for path in files}
    report.manifest = write_manifest(output, files, digests)
    report.sizes = {path.name: path.stat().st_size for path in files}
    return report
