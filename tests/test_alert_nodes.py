"""Active nodes against a real mosquitto: a killed edge agent turns offline through its last will."""

from __future__ import annotations

import json
import time
from pathlib import Path

from facewire.schema.status import NodeStatus
from facewire.topics import Topics
from facewire_console.broker import LocalBroker
from harness.processes import SAMPLE, Collector, run_module, start_module
from tests.alert_support import log_tail, publish_all, wait_for_online, wait_until


def node_states(collector: Collector) -> dict[str, str]:
    """The node states of the newest summary the nodes subscriber published."""
    summaries = collector.matching(lambda t: t == Topics().stats_nodes())
    if not summaries:
        return {}
    return {n["node"]: n["state"] for n in json.loads(summaries[-1][1])["nodes"]}


def test_killed_node_goes_offline_and_silent_node_goes_stale(broker: LocalBroker, tmp_path: Path) -> None:
    env = {"FACEWIRE_NODES__STALE_AFTER": "3", "FACEWIRE_NODES__PUBLISH_INTERVAL": "0.5"}
    nodes_args = ["run", "nodes", "--broker", broker.url, "--instance", "nw"]
    watcher = start_module("alert_service", nodes_args, env, tmp_path / "nodes.log")
    collector = Collector(broker.url, [Topics().stats_nodes()]).start()
    video = str(SAMPLE / "short_hamilton_clip.mp4")
    edge_args = ["run", "--broker", broker.url, "--node-id", "door-cam", "--source", video, "--max-fps", "2"]
    edge_env = {"FACEWIRE_EDGE__STATE_DIR": str(tmp_path)}
    edge = start_module("edge_agent", edge_args, edge_env, tmp_path / "edge.log")
    try:
        wait_for_online(broker.url, "nodes", "nw")
        # a node whose process hangs: its connection stays up, its heartbeats stop
        frozen = NodeStatus("frozen-cam", "online", time.time()).to_json()
        publish_all(broker.url, [(Topics().node_status("frozen-cam"), frozen)], "frozen-cam", retain=True)
        assert wait_until(lambda: node_states(collector).get("door-cam") == "online", 60), log_tail(
            tmp_path / "edge.log"
        )
        edge.kill()  # SIGKILL: no clean disconnect, the broker publishes the last will
        edge.wait()
        assert wait_until(lambda: node_states(collector).get("door-cam") == "offline", 15), node_states(collector)
        assert wait_until(lambda: node_states(collector).get("frozen-cam") == "stale", 15), node_states(collector)
        shown = run_module("facewire_console", ["nodes", "--broker", broker.url, "--json", "--stale-after", "3"], {})
        assert shown.returncode == 0, shown.stderr
        states = {n["node"]: (n["state"], n["reason"]) for n in json.loads(shown.stdout)}
        assert states["door-cam"] == ("offline", "connection lost") and states["frozen-cam"][0] == "stale"
    finally:
        for process in (edge, watcher):
            if process.poll() is None:
                process.terminate()
                process.wait(20)
        collector.stop()
    assert watcher.returncode == 0, log_tail(tmp_path / "nodes.log")
