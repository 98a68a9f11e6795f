"""A face's (node, seq) identity survives a damaged sequence state file (issue 18, item 3)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.sequence import SequenceCounter
from facewire_console.broker import LocalBroker
from harness.faults import recorded, start_recorder
from harness.processes import RunningClassifier, run_module
from tests.test_spine_integration import split_sample

DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "emptied": lambda _text: b"",
    "truncated": lambda text: text[:2],
    "newline-cut": lambda text: text.rstrip(b"\n"),
    "garbage": lambda _text: b"\x00\xffnot a number\n",
    "digit-flipped": lambda text: b"9" + text[1:],
}


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_state_file_never_hands_out_a_seq_twice(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    state = tmp_path / "cam-1.seq"
    counter = SequenceCounter(state)
    seen = [counter() for _ in range(1500)]
    state.write_bytes(damage(state.read_bytes()))
    restarted = SequenceCounter(state)
    after = [restarted() for _ in range(10)]
    assert min(after) > max(seen), f"{state.read_text()!r}: {after[0]} was handed out before"


def test_a_new_node_starts_at_zero_and_a_restart_goes_on(tmp_path: Path) -> None:
    counter = SequenceCounter(tmp_path / "cam-1.seq")
    assert [counter() for _ in range(3)] == [0, 1, 2]
    assert SequenceCounter(tmp_path / "cam-1.seq")() == 1000


def edge_once(url: str, source: Path, state: Path) -> int:
    """Run a real ``edge-agent run --once``; the number of embeddings it published."""
    args = ["run", "--node-id", "cam-1", "--source", str(source), "--once", "--broker", url]
    run = run_module("edge_agent", args, {"FACEWIRE_EDGE__STATE_DIR": str(state)})
    assert run.returncode == 0, run.stderr[-2000:]
    return int(re.findall(r"(\d+) published", run.stderr)[-1])


def test_faces_after_a_truncated_state_file_are_recorded(broker: LocalBroker, tmp_path: Path, sample_dir: Path) -> None:
    """Two runs of a real edge agent with the state file truncated between them: the recorder keeps both runs'
    faces (before, the second run reused seqs 0.. and INSERT OR IGNORE dropped every one of its faces)."""
    gallery, _probes = split_sample(sample_dir, tmp_path)
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="seq").start()
    recorder = start_recorder(broker.url, tmp_path / "results.sqlite", tmp_path / "recorder.log")
    state = tmp_path / "state"
    try:
        first = edge_once(broker.url, sample_dir / "lfw/unknown", state)
        (state / "cam-1.seq").write_bytes(b"")
        second = edge_once(broker.url, sample_dir / "lfw/unknown", state)
        deadline = time.monotonic() + 30
        while recorded(tmp_path / "results.sqlite")[0] < first + second and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        assert classifier.stop() == 0
        recorder.terminate()
        assert recorder.wait(30) == 0
    rows, distinct = recorded(tmp_path / "results.sqlite")
    assert first > 0 and (rows, distinct) == (first + second, first + second)
