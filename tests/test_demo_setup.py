"""The README's first command, `bash scripts/demo.sh`, on a fresh checkout: it installs only what the demo
needs (mosquitto and facewire[server], none of the test suite's tools) and the demo names the singer."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # builds a virtualenv
CHECKOUT = ["pyproject.toml", "README.md", "facewire", "facewire_console", "edge_agent", "classifier_service"]
CHECKOUT += ["alert_service", "broker", "scripts", "data/sample"]
TEST_ONLY = ["pytest", "playwright", "psycopg", "hypothesis", "mypy", "ruff", "starlette", "mediapipe"]


def test_the_demo_script_installs_the_demo_and_nothing_for_the_tests(tmp_path: Path) -> None:
    checkout = tmp_path / "facewire"
    for name in CHECKOUT:
        source, target = ROOT / name, checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(
        ["bash", "scripts/demo.sh"], capture_output=True, text=True, cwd=checkout, env=env, timeout=1700
    )
    assert "installing facewire[server]" in result.stderr, result.stderr[-3000:]
    listed = subprocess.run(
        [str(checkout / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert {"facewire", "faiss-cpu", "onnxruntime", "paho-mqtt"} <= names
    assert not names & set(TEST_ONLY), names & set(TEST_ONLY)
    # and the demo itself ran on what was installed
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seen:" in result.stdout and "Lin_Manuel_Miranda" in result.stdout, result.stdout[-2000:]
