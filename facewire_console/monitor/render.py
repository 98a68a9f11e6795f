"""Render a monitor snapshot with rich: a full-screen layout that fits an 80x24 terminal.

Pure: a snapshot dict in, a renderable out. Colours follow the seed: green
known, yellow low confidence, red unknown.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATE_STYLE = {"online": "green", "stale": "yellow", "offline": "red"}
KEYS_HELP = "q quit · n next node · p next person · a all"
SIDE_WIDTH = 34


def render_screen(snapshot: dict[str, Any], height: int = 24) -> Layout:
    """The whole screen: header, results on the left, nodes / thresholds / alerts on the right, footer."""
    layout = Layout()
    layout.split_column(Layout(header(snapshot), size=1), Layout(name="body"), Layout(footer(snapshot), size=1))
    body_rows = max(height - 2, 6)
    side = Layout()
    node_rows = min(max(len(snapshot["nodes"]), 1), 6) + 3
    side.split_column(
        Layout(nodes_panel(snapshot), size=node_rows),
        Layout(health_panel(snapshot), size=6),
        Layout(alerts_panel(snapshot, max(body_rows - node_rows - 6 - 2, 1))),
    )
    layout["body"].split_row(Layout(results_panel(snapshot, body_rows - 3)), Layout(side, size=SIDE_WIDTH))
    return layout


def header(snapshot: dict[str, Any]) -> Text:
    """One line: connection, throughput, latency percentiles, filters."""
    text = Text()
    text.append(" facewire ", style="bold reverse")
    if snapshot["connected"]:
        text.append(" ● connected ", style="green")
    else:
        text.append(" ● disconnected ", style="bold red blink")
    text.append(f"{snapshot['throughput']:.1f} res/s ")
    latency = snapshot["latency_ms"]
    if latency["n"]:
        text.append(f"lat p50 {_ms(latency['p50'])} p95 {_ms(latency['p95'])} p99 {_ms(latency['p99'])}")
    else:
        text.append("lat –", style="dim")
    return text


def footer(snapshot: dict[str, Any]) -> Text:
    """Keys and active filters."""
    filters = snapshot["filters"]
    text = Text(f" {KEYS_HELP}", style="dim")
    shown = [f"{k}={v}" for k, v in filters.items() if v]
    text.append("   filter: " + (" ".join(shown) if shown else "none"), style="bold" if shown else "dim")
    return text


def results_panel(snapshot: dict[str, Any], rows: int) -> Panel:
    """Most recent results first: time, node, name, score, coloured by known / low / unknown."""
    table = Table(box=None, pad_edge=False, collapse_padding=True, expand=True, show_header=True, header_style="bold")
    table.add_column("time", width=8, no_wrap=True)
    table.add_column("node", ratio=2, min_width=12, no_wrap=True, overflow="ellipsis")
    table.add_column("name", ratio=3, min_width=14, no_wrap=True, overflow="ellipsis")
    table.add_column("score", width=6, justify="right", no_wrap=True)
    for result in snapshot["results"][: max(rows, 1)]:
        style = result["style"]
        table.add_row(result["time"], result["node"], Text(result["name"], style=style), f"{result['score']:.3f}")
    total = snapshot["totals"]["results"]
    return Panel(table, title=f"results ({total})", title_align="left", box=box.ROUNDED, padding=(0, 0))


def nodes_panel(snapshot: dict[str, Any]) -> Panel:
    """Each node with its state and rates from its heartbeat."""
    table = Table(box=None, pad_edge=False, collapse_padding=True, expand=True, header_style="bold")
    table.add_column("node", no_wrap=True, overflow="ellipsis", ratio=3)
    table.add_column("state", no_wrap=True, width=7)
    table.add_column("fps", justify="right", width=5, no_wrap=True)
    table.add_column("f/s", justify="right", width=5, no_wrap=True)
    for node in snapshot["nodes"][:6]:
        state = node["state"]
        table.add_row(
            node["node"],
            Text(state, style=STATE_STYLE.get(state, "dim")),
            _rate(node["fps"]),
            _rate(node["faces_per_s"]),
        )
    return Panel(table, title=f"nodes ({len(snapshot['nodes'])})", title_align="left", padding=(0, 0))


def health_panel(snapshot: dict[str, Any]) -> Panel:
    """Thresholds (configured, recommended, FAR / FRR), classifiers and dead letters."""
    th = snapshot["thresholds"]
    lines = [
        Text.assemble(("thr ", "bold"), f"{th['configured']:.3f}", ("  rec ", "bold"), _fmt(th["recommended"], ".3f")),
        Text.assemble(("FAR ", "bold"), _fmt(th["far"], ".2g"), ("  FRR ", "bold"), _fmt(th["frr"], ".2g")),
        _classifier_line(snapshot["classifiers"]),
        _deadletter_line(snapshot["deadletters"]),
    ]
    return Panel(Group(*lines), title="thresholds · services", title_align="left", padding=(0, 0))


def alerts_panel(snapshot: dict[str, Any], rows: int) -> Panel:
    """Open (recent, not yet expired from view) alerts, newest first."""
    lines: list[RenderableType] = []
    for alert in snapshot["alerts"][: max(rows, 1)]:
        subject = "" if alert["subject"] == alert["node"] else f" {alert['subject']}"
        where = f" @{alert['node']}"
        line = Text.assemble((alert["time"] + " ", "dim"), (alert["rule"], "bold red"), subject, where)
        line.no_wrap, line.overflow = True, "ellipsis"
        lines.append(line)
    if not lines:
        lines.append(Text("no alerts", style="dim"))
    return Panel(Group(*lines), title=f"alerts ({len(snapshot['alerts'])})", title_align="left", padding=(0, 0))


def _classifier_line(classifiers: list[dict[str, Any]]) -> Text:
    if not classifiers:
        return Text("classifier –", style="dim")
    online = [c for c in classifiers if c["state"] == "online"]
    people = max((c["people"] or 0 for c in classifiers), default=0)
    queue = sum(c["queue"] for c in online)
    style = "green" if online else "red"
    return Text.assemble(
        ("clf ", "bold"), (f"{len(online)}/{len(classifiers)} up", style), f" {people:.0f} ppl q{queue}"
    )


def _deadletter_line(deadletters: list[dict[str, Any]]) -> Text:
    if not deadletters:
        return Text("dead letters 0", style="dim")
    parts = [f"{d['reason']} {d['count']}" for d in sorted(deadletters, key=lambda d: -d["count"])]
    return Text.assemble(("DL ", "bold red"), ", ".join(parts))


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}ms"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
