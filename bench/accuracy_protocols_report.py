"""Tables of the protocol benchmark: bench/results/accuracy_protocols.json and BENCHMARKS.md's section."""

from __future__ import annotations

from typing import Any

import click

from bench.common import machine_line, table, update_section, write_json

SECTION = "accuracy-protocols"
METRIC_LABELS = {
    "rank1": "rank-1",
    "tar_at_far_0.001": "TAR@FAR1e-3",
    "known_correct_at_threshold": "known correct @ default",
    "unknown_rejected_at_threshold": "unknown rejected @ default",
}


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def verdicts(name: str, numbers: dict[str, Any], targets: dict[str, dict[str, float]]) -> str:
    """``rank-1 ≥ 99.9 %: FAIL (99.4 %)`` for each target of the protocol, facewire's numbers."""
    wanted = targets.get(name, {})
    parts = []
    for metric, minimum in wanted.items():
        value = numbers[metric]
        ok = "pass" if value >= minimum else "**FAIL**"
        parts.append(f"{METRIC_LABELS[metric]} ≥ {100 * minimum:.1f} %: {ok} ({pct(value)})")
    return "; ".join(parts) or "—"


def side_by_side(data: dict[str, Any]) -> str:
    """One row per protocol and system."""
    rows = []
    for protocol in data["protocols"]:
        name = protocol["name"]
        for index, system in enumerate(data["systems"]):
            n = system["protocols"][name]
            rows.append(
                [
                    f"`{name}`" if index == 0 else "",
                    system["system"],
                    f"{n['known_missed']} / {n['unknown_missed']}",
                    pct(n["rank1"]),
                    pct(n["tar_at_far_0.01"]),
                    pct(n["tar_at_far_0.001"]),
                    pct(n["known_correct_at_threshold"]),
                    pct(n["unknown_rejected_at_threshold"]),
                    verdicts(name, n, data["targets"]) if index == 0 else "",
                ]
            )
    header = [
        "protocol",
        "system",
        "missed faces known / unknown",
        "rank-1",
        "TAR@FAR1e-2",
        "TAR@FAR1e-3",
        "known correct @ default",
        "unknown rejected @ default",
        "issue target (facewire)",
    ]
    return table(header, rows)


def calibration_table(data: dict[str, Any]) -> str:
    cal = data["calibration"]
    rows = []
    for direction, found in cal["directions"].items():
        for name, n in found["protocols"].items():
            rows.append(
                [
                    direction,
                    f"{found['threshold']:.3f}",
                    f"`{name}`",
                    pct(n["known_correct_at_threshold"]),
                    pct(n["unknown_rejected_at_threshold"]),
                    f"{n['known_probes']} / {n['unknown_probes']}",
                ]
            )
    header = [
        "calibrated -> tested",
        "threshold",
        "protocol",
        "known correct",
        "unknown rejected",
        "probes known / unk.",
    ]
    return table(header, rows)


def ablation_table(data: dict[str, Any]) -> str:
    rows = []
    for row in data["ablation"]:
        cells = [row["decision"]]
        for half in ("A", "B"):
            h = row[half]
            cells += [
                pct(h["rank1"]),
                pct(h["tar_at_far_0.001"]),
                f"{pct(h['known_correct'])} / {pct(h['unknown_rejected'])}",
            ]
        rows.append(cells)
    header = ["decision"]
    for half in ("A", "B"):
        header += [f"{half}: rank-1", f"{half}: TAR@FAR1e-3", f"{half}: known correct / unknown rejected"]
    return table(header, rows)


def tracks_table(data: dict[str, Any]) -> str:
    """Track-level numbers of the simulated video tracks (bench.track_sim), or an empty string."""
    found = data.get("tracks")
    if not found:
        return ""
    rows = []
    for enrol, result in found.items():
        for way, n in result["ways"].items():
            rows.append(
                [
                    enrol,
                    way,
                    pct(n["rank1"]),
                    pct(n["tar_at_far_0.001"]),
                    pct(n["known_correct_at_threshold"]),
                    pct(n["unknown_rejected_at_threshold"]),
                ]
            )
    first = next(iter(found.values()))
    header = [
        "gallery",
        "track decided by",
        "rank-1",
        "TAR@FAR1e-3",
        "known correct @ default",
        "unknown rejected @ default",
    ]
    return (
        f"\n\nSimulated video tracks (facewire; frames at {' / '.join(first['scales'])}; "
        f"{first['known_tracks']} known and {first['unknown_tracks']} unknown tracks with 1 enrolment photo; "
        "see bench/track_sim.py):\n\n" + table(header, rows)
    )


def body(data: dict[str, Any]) -> str:
    d, cal = data["dataset"], data["calibration"]
    systems = "; ".join(f"{s['system']}: {s['threshold_rule']} ({s['decision']})" for s in data["systems"])
    skipped = f" Peer not run: {data['peer_skipped']}." if data.get("peer_skipped") else ""
    return (
        f"Dataset `{d['path']}`: {d['files']} files, {d['known_people']} known and {d['unknown_people']} unknown "
        f"people (limit {d['limit_people']}), content SHA-256 `{d['content_sha256'][:16]}…`. Enrolment photos clean, "
        f"probes degraded per protocol; faces down to {data['bench_min_face']} px. Defaults: {systems}.{skipped}\n\n"
        + side_by_side(data)
        + f"\n\nThreshold calibration (facewire, FAR {cal['far']:g} over the pooled protocols of one half of the "
        f"people, tested on the other half; halves of {cal['people']['A']} and {cal['people']['B']} people): "
        f"A {cal['thresholds']['A']:.3f}, B {cal['thresholds']['B']:.3f}, shipped default = mean rounded up: "
        f"{cal['shipped']:.2f}.\n\n"
        + calibration_table(data)
        + "\n\nDecision ablation (each half is its own calibration split; numbers are means over the protocols; "
        "known correct / unknown rejected at the half's own calibrated threshold):\n\n"
        + ablation_table(data)
        + tracks_table(data)
    )


def publish(data: dict[str, Any], command: str) -> None:
    """JSON, BENCHMARKS.md section, and the tables on stdout."""
    data = {"command": command, **data}
    path = write_json("accuracy_protocols", data)
    text = body(data)
    update_section(SECTION, machine_line(command) + "\n\n" + text)
    click.echo(text)
    click.echo(f"written {path} and the '{SECTION}' table of BENCHMARKS.md", err=True)
