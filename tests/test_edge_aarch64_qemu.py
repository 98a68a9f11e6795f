"""The edge agent under an aarch64 interpreter (QEMU user mode) against the same run on x86_64.

Runs only where an arm64 root prepared by scripts/aarch64-edge-check.sh is named by
FACEWIRE_ARM64_ROOT (and as root, for chroot); CI skips it. On the bundled clip, both runs publish
to one real mosquitto and a subscriber compares them by (frame, track). One comparison (about
10 minutes under emulation) serves both tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.aarch64 import Comparison, check_root, run_both

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    configured = os.environ.get("FACEWIRE_ARM64_ROOT")
    if not configured:
        pytest.skip("FACEWIRE_ARM64_ROOT is not set (prepare one with scripts/aarch64-edge-check.sh)")
    problem = check_root(Path(configured))
    if problem:
        pytest.skip(f"FACEWIRE_ARM64_ROOT={configured}: {problem}")
    return run_both(Path(configured))


def counts(summary: str) -> tuple[int, int]:
    """(frames, faces) of an `edge-agent run --once` summary line: 'NODE: N frames, N faces, ...'."""
    frames, faces = summary.split(": ", 1)[1].split(", ")[:2]
    return int(frames.split()[0]), int(faces.split()[0])


def test_aarch64_edge_processes_the_clip_and_publishes_the_faces_it_shares_with_x86(comparison: Comparison) -> None:
    (x86_frames, x86_faces), (arm_frames, arm_faces) = counts(comparison.x86_summary), counts(comparison.arm64_summary)
    assert arm_frames == x86_frames == 275, comparison
    assert abs(arm_faces - x86_faces) <= 0.01 * x86_faces, comparison
    assert comparison.arm64_published > 0 and comparison.x86_published > 0, comparison
    assert comparison.x86_published - len(comparison.only_x86) >= 3, comparison  # ids both runs published
    assert comparison.min_cosine > 0.9, comparison


@pytest.mark.xfail(
    strict=True,
    reason="2026-12-02: 7 published on x86, 5 on aarch64, pairs down to cosine 0.946: YuNet's landmarks "
    "differ by up to 3.6 px on aarch64 OpenCV, so do the aligned crops (SFace on one crop: cosine 1.0)",
)
def test_aarch64_edge_publishes_exactly_the_x86_faces(comparison: Comparison) -> None:
    assert comparison.same_ids, (comparison.only_x86, comparison.only_arm64)
    assert comparison.min_cosine > 0.99, comparison
