"""Face embedders behind one interface; ONNX models run through onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from facewire.errors import ModelError
from facewire.models.registry import EmbedderSpec


class Embedder(Protocol):
    model_id: str
    dim: int
    input_size: int
    needs_alignment: bool

    def embed(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings, shape (len(faces), dim), of BGR crops of input_size x input_size."""
        ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def available_providers() -> list[str]:
    """Execution providers to try, best first: TensorRT and CUDA where present, CPU always."""
    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    present = set(ort.get_available_providers())
    return [p for p in preferred if p in present] or ["CPUExecutionProvider"]


class OnnxEmbedder:
    """An ONNX embedder run by onnxruntime, batched when the model's batch axis is dynamic."""

    def __init__(self, model_path: Path, spec: EmbedderSpec, threads: int = 1) -> None:
        self.model_id = spec.id
        self.dim = spec.dim
        self.input_size = spec.input_size
        self.needs_alignment = spec.needs_alignment
        self.crop_margin = spec.crop_margin
        self.spec = spec
        self._spec = spec
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=available_providers())
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise ModelError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        model_input = self._session.get_inputs()[0]
        if model_input.name != spec.input_name:
            raise ModelError(f"{model_path} has input {model_input.name!r}, expected {spec.input_name!r}")
        self._batched = not isinstance(model_input.shape[0], int)
        self.provider = self._session.get_providers()[0]
        self._mean = np.array(spec.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.array(spec.std, dtype=np.float32).reshape(1, 3, 1, 1)

    def _preprocess(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) if self._spec.rgb else f for f in faces])
        tensor = batch.transpose(0, 3, 1, 2).astype(np.float32)
        return (tensor - self._mean) / self._std

    def embed(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim), dtype=np.float32)
        tensor = self._preprocess(faces)
        if self._batched:
            output = self._session.run(None, {self._spec.input_name: tensor})[0]
        else:
            output = np.concatenate([self._session.run(None, {self._spec.input_name: t[None]})[0] for t in tensor])
        return l2_normalise(output.reshape(len(faces), -1))
