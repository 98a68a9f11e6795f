"""Helpers for the model-option tests: export a random CLIP once, know whether the extras are installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from facewire.models.mediapipe_faces import mediapipe_available
from harness.processes import ROOT

EXPORTER = ROOT / "models" / "export_clip_onnx.py"


def need_torch() -> None:
    """Skip (with the reason) where the export extra is not installed."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("torch/transformers not installed: pip install -e '.[export]' to run the CLIP export tests")


def need_mediapipe() -> None:
    """Skip (with the reason) where MediaPipe is not installed."""
    if not mediapipe_available():
        pytest.skip("mediapipe not installed: see docs/models.md for the one-cv2 install recipe")


def run_exporter(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python models/export_clip_onnx.py ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, str(EXPORTER), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def export_random(folder: Path, config: str) -> Path:
    """Export a randomly initialised CLIP vision model of ``config``; the fp32 file."""
    done = run_exporter(["--random-init", config, "--output", str(folder)])
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / f"clip-{config}.onnx"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny CLIP vision model (32-d) exported by the real exporter."""
    need_torch()
    return export_random(tmp_path_factory.mktemp("tiny-clip"), "tiny")
