"""The monitor as a person uses it: a real terminal (tmux), a real broker, a replayed stream.

Also ``--once --json`` against the same stream, a broker restart mid-session,
and ``facewire tail`` on real msgpack embeddings.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facewire.schema import FaceEmbedding
from facewire_console.broker import LocalBroker
from tests.monitor_stream import TOPICS, Tmux, expected, facewire_command, make_results, make_stream, publish


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if not Tmux.available():
        pytest.skip("tmux is not installed (apt-get install tmux): the real-terminal monitor tests are skipped")
    session = Tmux(tmp_path)
    yield session
    session.kill()


def monitor_in(tmux: Tmux, broker: LocalBroker, *extra: str) -> None:
    tmux.start([*facewire_command(), "monitor", "--broker", broker.url, "--refresh", "8", *extra])
    screen = tmux.wait_for(lambda s: "● connected" in s, timeout=30)
    assert "● connected" in screen, screen


def test_monitor_shows_the_stream_in_80x24_and_quits_on_q(broker: LocalBroker, tmux: Tmux) -> None:
    monitor_in(tmux, broker)
    stream = make_stream(time.time())
    publish(broker.url, stream.messages)
    screen = tmux.wait_for(lambda s: "emb-length" in s and "Alex_Lacamoire" in s, timeout=15)
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    for needle in ("cam-front", "cam-back", "cam-old", "online", "offline", "Lin_Manuel_Mi", "unknown", "0.480"):
        assert needle in screen, f"{needle!r} not on screen:\n{screen}"
    assert f"results ({len(stream.results)})" in screen
    assert "alerts (1)" in screen
    tmux.keys("n")  # filter to the first node
    screen = tmux.wait_for(lambda s: "filter: node=cam-back" in s, timeout=5)
    assert "filter: node=cam-back" in screen and "cam-front" not in screen, screen
    tmux.keys("q")
    assert tmux.exit_code(timeout=10) == 0
    assert tmux.terminal_restored()


def test_monitor_survives_broker_restart(tmp_path: Path, tmux: Tmux) -> None:
    broker = LocalBroker(tmp_path / "broker").start()
    try:
        monitor_in(tmux, broker)
        broker.stop()
        screen = tmux.wait_for(lambda s: "disconnected" in s, timeout=15)
        assert "disconnected" in screen, screen
        broker.start()
        screen = tmux.wait_for(lambda s: "● connected" in s, timeout=20)
        assert "● connected" in screen, screen
        time.sleep(0.5)  # let the renewed subscriptions land
        results = make_results(3, time.time(), first_seq=500)
        publish(broker.url, [(TOPICS.results(r.node), r.to_json(), False) for r in results])
        screen = tmux.wait_for(lambda s: "results (3)" in s, timeout=15)
        assert "results (3)" in screen and "Lin_Manuel_Mi" in screen, screen
        tmux.keys("C-c")
        assert tmux.exit_code(timeout=10) == 0
        assert tmux.terminal_restored()
    finally:
        broker.stop()


def test_monitor_started_before_the_broker_connects_when_it_comes(tmp_path: Path, tmux: Tmux) -> None:
    broker = LocalBroker(tmp_path / "late-broker")
    try:
        tmux.start([*facewire_command(), "monitor", "--broker", broker.url])
        screen = tmux.wait_for(lambda s: "disconnected" in s, timeout=30)
        assert "disconnected" in screen, screen
        broker.start()
        screen = tmux.wait_for(lambda s: "● connected" in s, timeout=20)
        assert "● connected" in screen, screen
        tmux.keys("q")
        assert tmux.exit_code(timeout=10) == 0
    finally:
        broker.stop()


def test_once_json_snapshot_matches_stream(broker: LocalBroker) -> None:
    stream = make_stream(time.time())
    process = subprocess.Popen(
        [*facewire_command(), "monitor", "--broker", broker.url, "--json", "--duration", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "connected to" in process.stderr.readline()
    time.sleep(0.2)
    publish(broker.url, stream.messages)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    snapshot = json.loads(out)
    want = expected(stream)
    assert snapshot["connected"] is True
    assert snapshot["totals"] == {"results": want["results"], "by_name": want["by_name"]}
    assert [(r["node"], r["seq"]) for r in snapshot["results"]] == [(r.node, r.seq) for r in reversed(stream.results)]
    assert snapshot["latency_ms"]["p50"] == round(float(want["latency_p50"]), 1)  # type: ignore[arg-type]
    states = {n["node"]: n["state"] for n in snapshot["nodes"]}
    assert states == {"cam-front": "online", "cam-back": "online", "cam-old": "offline"}
    assert snapshot["deadletters"] == [{"service": "classifier", "reason": "emb-length", "count": 1}]
    assert [(a["rule"], a["node"]) for a in snapshot["alerts"]] == [("unknown", "cam-front")]
    assert snapshot["thresholds"]["recommended"] == 0.48
    assert snapshot["throughput"] == pytest.approx(len(stream.results) / 10.0)


def test_once_json_without_broker_says_disconnected(tmp_path: Path) -> None:
    down = LocalBroker(tmp_path / "never-started")
    run = subprocess.run(
        [*facewire_command(), "monitor", "--broker", down.url, "--json", "--duration", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert json.loads(run.stdout)["connected"] is False


def test_tail_decodes_embeddings(broker: LocalBroker) -> None:
    vector = np.ones(128, dtype=np.float32) / np.sqrt(128)
    embeddings = [
        FaceEmbedding(
            "cam-1", seq, time.time(), seq, 1, (10, 20, 64, 64), 0.95, {"size": 64.0}, "sface-2021dec", vector
        )
        for seq in (1, 2)
    ]
    process = subprocess.Popen(
        [*facewire_command(), "tail", "--broker", broker.url, "--json", "--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "tailing" in process.stderr.readline()
    time.sleep(0.2)
    messages = [(TOPICS.embeddings("cam-1"), e.to_msgpack(), False) for e in embeddings]
    publish(broker.url, [*messages, (TOPICS.embeddings("cam-1"), b"not msgpack at all", False)])
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x.get("node"), x.get("seq"), x.get("dim")) for x in lines[:2]] == [("cam-1", 1, 128), ("cam-1", 2, 128)]
    assert lines[0]["bytes"] == len(embeddings[0].to_msgpack()) and "vector" not in lines[0]
    assert lines[2]["error"] in {"not-msgpack", "wrong-type"}


def test_once_json_filtered_by_flags(broker: LocalBroker) -> None:
    stream = make_stream(time.time())
    process = subprocess.Popen(
        [
            *facewire_command(),
            "monitor",
            "--broker",
            broker.url,
            "--json",
            "--duration",
            "2",
            "--node",
            "cam-back",
            "--person",
            "Alex_Lacamoire",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "connected to" in process.stderr.readline()
    time.sleep(0.2)
    publish(broker.url, stream.messages)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    snapshot = json.loads(out)
    wanted = [r for r in stream.results if r.node == "cam-back" and r.name == "Alex_Lacamoire"]
    assert wanted and [(r["node"], r["seq"]) for r in snapshot["results"]] == [
        (r.node, r.seq) for r in reversed(wanted)
    ]
    assert [n["node"] for n in snapshot["nodes"]] == ["cam-back"]
    assert snapshot["filters"] == {"node": "cam-back", "person": "Alex_Lacamoire"}
