"""Metadata inside an exported ONNX embedder, and the SHA-256 manifest beside it.

The exporter writes ``facewire.*`` keys into the model's ``metadata_props``;
the registry builds an EmbedderSpec from them, so a file is self-describing:
``--model path/to/clip.onnx`` needs no other configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from facewire.errors import ModelError

PREFIX = "facewire."
MANIFEST = "SHA256SUMS"
REQUIRED = ("model_id", "family", "embedding_dim", "input_size", "mean", "std")


@dataclass(frozen=True)
class ExportMetadata:
    """What an exported embedder says about itself (mean/std on the 0..1 pixel scale, as Hugging Face)."""

    model_id: str
    family: str
    embedding_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_name: str = "pixel_values"
    variant: str = "fp32"
    source: str = ""
    revision: str = ""
    export_date: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries, every value a string."""
        props = {
            "model_id": self.model_id,
            "family": self.family,
            "embedding_dim": str(self.embedding_dim),
            "input_size": str(self.input_size),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "input_name": self.input_name,
            "variant": self.variant,
            "source": self.source,
            "revision": self.revision,
            "export_date": self.export_date,
            **dict(self.extra),
        }
        return {PREFIX + key: value for key, value in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], label: str) -> ExportMetadata:
        """Parse ``facewire.*`` props; ModelError names what is missing or malformed."""
        ours = {key[len(PREFIX) :]: value for key, value in props.items() if key.startswith(PREFIX)}
        missing = [key for key in REQUIRED if key not in ours]
        if missing:
            raise ModelError(
                f"{label} has no facewire metadata ({', '.join(PREFIX + m for m in missing)} missing): "
                "export it with `facewire models export-clip`"
            )
        try:
            mean, std = json.loads(ours["mean"]), json.loads(ours["std"])
            known = {f for f in cls.__dataclass_fields__ if f != "extra"}
            return cls(
                model_id=ours["model_id"],
                family=ours["family"],
                embedding_dim=int(ours["embedding_dim"]),
                input_size=int(ours["input_size"]),
                mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                std=(float(std[0]), float(std[1]), float(std[2])),
                input_name=ours.get("input_name", "pixel_values"),
                variant=ours.get("variant", "fp32"),
                source=ours.get("source", ""),
                revision=ours.get("revision", ""),
                export_date=ours.get("export_date", ""),
                extra=tuple(sorted((k, v) for k, v in ours.items() if k not in known)),
            )
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ModelError(f"{label} has malformed facewire metadata: {exc}") from exc


def write_metadata(model: onnx.ModelProto, metadata: ExportMetadata) -> None:
    """Replace the ``facewire.*`` metadata_props of ``model`` (in place)."""
    others = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*others, *metadata.to_props().items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: Path) -> ExportMetadata:
    """The facewire metadata of the ONNX file at ``path``."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError and others
        raise ModelError(f"cannot read ONNX file {path}: {exc}") from exc
    return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(path))


def write_manifest(folder: Path, files: list[Path], digest: dict[Path, str]) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum -c`` format) for ``files`` into ``folder``."""
    manifest = folder / MANIFEST
    manifest.write_text("".join(f"{digest[f]}  {f.name}\n" for f in files))
    return manifest


def manifest_digest(path: Path) -> str | None:
    """The SHA-256 that the ``SHA256SUMS`` beside ``path`` lists for it, if any."""
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        return None
    for line in manifest.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return None
