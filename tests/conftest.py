"""Shared fixtures: a real mosquitto on a free loopback port, sample and shared data, models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from facewire.config import ModelSettings
from facewire.faces import FaceAnalyzer, create_analyzer
from facewire_console.broker import LocalBroker
from harness.processes import SAMPLE, shared_data_dir
from tests.pg_support import database_url, postgres_server, postgres_url  # noqa: F401  (PostgreSQL fixtures)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """mosquitto with broker/mosquitto.conf on a free port, stopped after the test."""
    local = LocalBroker(tmp_path / "broker").start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it skip with a clear message where it is absent."""
    found = shared_data_dir()
    if found is None:
        pytest.skip("../shared/data not found (set FACEWIRE_SHARED_DATA): large-data test skipped")
    return found


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    """The default detector + aligner + embedder (YuNet + SFace)."""
    return create_analyzer(ModelSettings(), det_threshold=0.6, min_face=20)
