"""Unit tests of the monitor's pure parts: state model, threshold stats reading, renderer, tail decoding."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
from rich.console import Console

from facewire.schema import FaceEmbedding
from facewire.schema.status import NodeStatus
from facewire_console.monitor.render import render_screen
from facewire_console.monitor.state import MonitorState
from facewire_console.monitor.stats import latency_percentiles
from facewire_console.monitor.tail import describe_embedding, format_line
from tests.monitor_stream import TOPICS, expected, make_results, make_stream

NOW = 1_800_000_000.0


def fed(now: float = NOW, **kwargs: object) -> MonitorState:
    state = MonitorState(**kwargs)  # type: ignore[arg-type]
    for topic, payload, _retain in make_stream(now).messages:
        state.ingest(topic, payload, now)
    return state


def test_snapshot_counts_names_once_despite_redelivery() -> None:
    stream = make_stream(NOW)
    snapshot = fed().snapshot(NOW)
    want = expected(stream)
    assert snapshot["totals"] == {"results": want["results"], "by_name": want["by_name"]}
    assert snapshot["latency_ms"]["p50"] == round(float(want["latency_p50"]), 1)  # type: ignore[arg-type]
    assert snapshot["latency_ms"]["n"] == len(stream.results)


def test_result_colours_known_low_confidence_unknown() -> None:
    styles = {(r["name"], r["score"]): r["style"] for r in fed().snapshot(NOW)["results"]}
    assert styles[("unknown", 0.21)] == "red"
    assert styles[("Alex_Lacamoire", 0.62)] == "green"
    assert styles[("Alex_Lacamoire", 0.47)] == "yellow"  # known but below threshold + 0.05


def test_newest_result_first_and_time_shown() -> None:
    results = fed().snapshot(NOW)["results"]
    assert [r["seq"] for r in results] == sorted((r["seq"] for r in results), reverse=True)
    assert results[0]["time"] == time.strftime("%H:%M:%S", time.localtime(results[0]["ts"]))


def test_nodes_online_offline_and_stale() -> None:
    state = fed(stale_after=30.0)
    nodes = {n["node"]: n for n in state.snapshot(NOW + 1)["nodes"]}
    assert nodes["cam-front"]["state"] == "online" and nodes["cam-front"]["fps"] == 7.5
    assert nodes["cam-old"]["state"] == "offline"
    later = {n["node"]: n["state"] for n in state.snapshot(NOW + 31)["nodes"]}
    assert later["cam-front"] == "stale" and later["cam-old"] == "offline"


def test_retained_old_heartbeat_is_stale_at_once() -> None:
    state = MonitorState(stale_after=30.0)
    status = NodeStatus("n1", "online", NOW - 100)
    state.ingest(TOPICS.node_status("n1"), status.to_json(), NOW)
    assert state.snapshot(NOW)["nodes"][0]["state"] == "stale"


def test_throughput_over_last_ten_seconds() -> None:
    state = MonitorState()
    for index, result in enumerate(make_results(20, NOW)):
        state.ingest(TOPICS.results(result.node), result.to_json(), NOW + index)  # one per second
    assert state.snapshot(NOW + 19)["throughput"] == 1.1  # arrivals at 9..19 s: 11 in 10 s
    assert state.snapshot(NOW + 100)["throughput"] == 0.0


def test_filters_by_node_and_person_and_cycling() -> None:
    state = fed()
    state.filters.node = "cam-back"
    snapshot = state.snapshot(NOW)
    assert {r["node"] for r in snapshot["results"]} == {"cam-back"}
    assert [n["node"] for n in snapshot["nodes"]] == ["cam-back"]
    state.filters.node, state.filters.person = "", "Alex_Lacamoire"
    snapshot = state.snapshot(NOW)
    assert {r["name"] for r in snapshot["results"]} == {"Alex_Lacamoire"}
    assert list(snapshot["totals"]["by_name"]) == ["Alex_Lacamoire"]
    state.filters.person = ""
    seen = []
    for _ in range(4):
        state.cycle_filter("node")
        seen.append(state.filters.node)
    assert seen == ["cam-back", "cam-front", "cam-old", ""]


def test_alerts_deadletters_thresholds_classifiers() -> None:
    snapshot = fed().snapshot(NOW)
    assert [(a["rule"], a["node"]) for a in snapshot["alerts"]] == [("unknown", "cam-front")]
    assert snapshot["deadletters"] == [{"service": "classifier", "reason": "emb-length", "count": 1}]
    thresholds = snapshot["thresholds"]
    assert thresholds["configured"] == 0.45 and thresholds["recommended"] == 0.48
    assert thresholds["far"] == 0.1 / 45 and thresholds["frr"] == 45 / 1000
    assert snapshot["classifiers"][0]["people"] == 2.0
    json.dumps(snapshot)  # JSON-ready


def test_alerts_older_than_the_window_are_no_longer_open() -> None:
    state = fed(alert_window=600.0)
    assert len(state.snapshot(NOW + 599)["alerts"]) == 1
    assert state.snapshot(NOW + 601)["alerts"] == []


def test_malformed_messages_are_counted_not_raised() -> None:
    state = MonitorState()
    state.ingest(TOPICS.results("x"), b"{not json", NOW)
    state.ingest(TOPICS.results("x"), b'{"v": 1}', NOW)
    state.ingest(TOPICS.node_status("x"), b"[1, 2]", NOW)
    state.ingest(TOPICS.stats_thresholds(), b'{"grid": "nonsense", "recommended": "high"}', NOW)
    state.ingest(TOPICS.alerts("x"), b'{"v": 1, "id": 3}', NOW)
    snapshot = state.snapshot(NOW)
    assert sum(snapshot["malformed"].values()) == 5
    assert snapshot["thresholds"]["recommended"] is None and snapshot["thresholds"]["far"] is None


def test_latency_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert latency_percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "n": 100}
    assert latency_percentiles([])["p50"] is None


def test_screen_fits_80x24_and_shows_what_matters() -> None:
    state = fed(connected=True)
    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(render_screen(state.snapshot(NOW), 24))
    lines = console.export_text().splitlines()
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    for needle in ("connected", "cam-front", "cam-back", "Alex_Lacamoire", "unknown", "emb-length", "0.480"):
        assert needle in text, needle


def test_disconnected_is_shown() -> None:
    console = Console(width=80, height=24, record=True, color_system=None)
    console.print(render_screen(MonitorState(connected=False).snapshot(NOW), 24))
    assert "disconnected" in console.export_text()


def test_tail_describes_embedding_without_vector_unless_asked() -> None:
    vector = np.ones(128, dtype=np.float32) / np.sqrt(128)
    emb = FaceEmbedding("cam-1", 7, NOW, 3, 2, (1, 2, 30, 40), 0.9, {"size": 40.0}, "sface-2021dec", vector)
    info = describe_embedding("facewire/embeddings/cam-1", emb.to_msgpack())
    assert (info["node"], info["seq"], info["dim"], info["model"]) == ("cam-1", 7, 128, "sface-2021dec")
    assert info["bytes"] == len(emb.to_msgpack()) and "vector" not in info
    assert "seq=7" in format_line(info) and "vector" not in format_line(info)
    with_vector = describe_embedding("t", emb.to_msgpack(), vector=True)
    assert len(with_vector["vector"]) == 128
    broken = describe_embedding("t", b"\x93garbage")
    assert broken["error"] in {"not-msgpack", "wrong-type"} and "INVALID" in format_line(broken)


def test_late_older_result_does_not_replace_last_person() -> None:
    state = MonitorState()
    newer, older = make_results(2, NOW, first_seq=10)
    older = dataclasses.replace(older, node=newer.node, ts=newer.ts - 5, name="Alex_Lacamoire")
    for result in (newer, older):
        state.ingest(TOPICS.results(result.node), result.to_json(), NOW)
    node = state.snapshot(NOW)["nodes"][0]
    assert (node["results"], node["last_person"]) == (2, newer.name)


def test_reads_the_stats_service_report() -> None:
    """The payload alert_service's stats publishes, built with its own class."""
    from facewire.schema.stats import GridPoint, OperatingPoint, ThresholdReport

    grid = tuple(GridPoint(t / 100, 1 / t, t / 200, 0.5) for t in range(1, 101))
    report = ThresholdReport(
        ts=NOW,
        target_far=1e-3,
        gallery_version="g1",
        model="sface-2021dec",
        counts={"genuine": 10, "impostor": 90},
        recommended=OperatingPoint(0.52, 0.001, 0.04, "tail-fit"),
        eer=OperatingPoint(0.4, 0.02, 0.02),
        grid=grid,
    )
    state = MonitorState(configured_threshold=0.45)
    state.ingest(TOPICS.stats_thresholds(), report.to_json(), NOW)
    summary = state.snapshot(NOW)["thresholds"]
    assert (summary["recommended"], summary["eer"], summary["target_far"]) == (0.52, 0.4, 1e-3)
    assert (summary["far"], summary["frr"]) == (1 / 45, 45 / 200)
