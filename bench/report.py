"""Turn benchmark results into bench/results/*.json and the generated tables of BENCHMARKS.md.

Each table sits between ``<!-- bench:NAME -->`` markers and is regenerated on every run; the
hand-written reading of each table sits below the end marker and is left alone.
"""

from __future__ import annotations

from typing import Any

import click

from bench.common import machine_line, table, update_section, write_json


def publish(name: str, data: dict[str, Any], command: str, body: str) -> None:
    """Write the JSON, regenerate the section, echo where both went."""
    data = {"command": command, **data}
    path = write_json(name, data)
    update_section(name, machine_line(command) + "\n\n" + body)
    click.echo(body)
    click.echo(f"written {path} and the '{name}' table of BENCHMARKS.md", err=True)


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def accuracy(data: dict[str, Any], command: str) -> None:
    dataset = data["dataset"]
    rows = []
    for model in data["models"]:
        ident, verif = model["identification"], model["verification"]
        rows.append(
            [
                f"`{model['model']}`",
                pct(ident["rank1"]),
                pct(ident["tar_at_far_0.01"]),
                pct(ident["tar_at_far_0.001"]),
                pct(ident["unknown_rejected_at_threshold"]),
                pct(ident["known_correct_at_threshold"]),
                f"{pct(verif['accuracy'])} ± {100 * verif['std']:.1f}",
                f"{ident['threshold_at_far_0.01']:.3f} / {ident['threshold_at_far_0.001']:.3f}",
            ]
        )
    first = data["models"][0]["identification"] if data["models"] else {}
    body = (
        f"Dataset `{dataset['path']}`: {dataset['files']} files, {dataset['known_people']} known and "
        f"{dataset['unknown_people']} unknown people, content SHA-256 `{dataset['content_sha256'][:16]}…`. "
        f"Enrolled {first.get('enrolled_photos', 0)} photos; probes: {first.get('known_probes', 0)} known "
        f"({first.get('known_missed', 0)} without a detected face, counted wrong) and "
        f"{first.get('unknown_probes', 0)} unknown. Default threshold {data['default_threshold']}.\n\n"
        + table(
            [
                "model",
                "rank-1",
                "TAR @ FAR 1e-2",
                "TAR @ FAR 1e-3",
                "unknown rejected @ default",
                "known correct @ default",
                "1:1 verification (10-fold)",
                "threshold @ FAR 1e-2 / 1e-3",
            ],
            rows,
        )
    )
    publish("accuracy", data, command, body)


def ms(value: float) -> str:
    return f"{value:.1f}"


def edge(data: dict[str, Any], command: str) -> None:
    rows = []
    for run in data["runs"]:
        name = f"{run['style']} · {run['detector'].split(' ')[0]} · {run['threads']} thr"
        if "error" in run:
            rows.append([name, "not run: " + run["error"].replace("|", "/")[:120]] + [""] * 8)
            continue
        stage = run["ms_per_frame"]
        stages = " / ".join(ms(stage[k]) for k in ("decode", "detect", "align", "embed", "track", "publish"))
        gated = sum(run.get("gated", {}).values())
        rows.append(
            [
                name,
                f"{run['fps']:.1f}",
                ratio_text(run, "naive"),
                ratio_text(run, "every_face"),
                f"{run['faces']} / {gated} / {run['embedded']} / {run['published']}",
                names_text(run["names"]),
                stages,
                f"{run['frames_per_cpu_s']:.1f} ({run['cpu_per_wall']:.2f})",
                f"{run['peak_rss_mb']:.0f}",
                ", ".join(f"{k} {v}" for k, v in sorted(run.get("gated", {}).items())),
            ]
        )
    frames = next((r["frames"] for r in data["runs"] if "frames" in r), 0)
    body = (
        f"Clip `{data['clip']}`, {frames} frames per run, each run in its own process, embeddings published "
        "to a local mosquitto. Baseline in the same run: `naive` (OpenCV's FaceDetectorYN + FaceRecognizerSF "
        f"on every face of at least {data['min_face']} px in every frame, same model files); `every-face` is "
        "facewire's pipeline before issue 20. "
        "Ratios are frames/s over the baseline's; in brackets, the same in frames per CPU second (what the "
        "work costs when the shared machine makes a run wait). Names: tracks / frames each name is drawn on "
        "with the sample gallery (bench/edge_names.py).\n\n"
        + table(
            [
                "pipeline · detector · threads",
                "frames/s",
                "÷ naive",
                "÷ every-face 1 thr",
                "faces detected / gated / embedded / published",
                "names: tracks / frames",
                "ms/frame: decode / detect / align / embed / track / publish",
                "frames per CPU s (CPU s per wall s)",
                "peak RSS MB",
                "gated by reason",
            ],
            rows,
        )
    )
    publish("edge", data, command, body)


def ratio_text(run: dict[str, Any], baseline: str) -> str:
    """``2.41 (2.10)``: frames/s over the baseline's, and frames per CPU second over its."""
    wall, cpu = run.get(f"ratio_to_{baseline}"), run.get(f"cpu_ratio_to_{baseline}")
    return "" if wall is None or cpu is None else f"{wall:.2f} ({cpu:.2f})"


def names_text(names: dict[str, dict[str, int]]) -> str:
    """``Lin_Manuel_Miranda 2 / 213, unknown 3 / 50``."""
    return ", ".join(f"{name} {n['tracks']} / {n['frames']}" for name, n in names.items())


def wire(data: dict[str, Any], command: str) -> None:
    sizes, rates = data["bytes"], data["rates"]
    message = sizes["mean_bytes"]["message"]
    named = [
        ("facewire FaceEmbedding message (msgpack, 128 × float16)", message),
        ("JPEG of the face box, quality 90 (edge+cloud design)", sizes["mean_bytes"]["crop_q90"]),
        ("JPEG of the face box, quality 75", sizes["mean_bytes"]["crop_q75"]),
        ("JPEG of the 112×112 aligned face, quality 90", sizes["mean_bytes"]["aligned_q90"]),
        ("whole frame JPEG q90, per face", sizes["frame_jpeg_q90_per_face"]),
        ("the clip's H.264 stream, per face", sizes["h264_per_face"]),
    ]
    byte_rows = [[name, f"{value:,.0f}", f"{value / message:.1f}×"] for name, value in named]
    rate_rows = [
        [name.replace("_", " "), f"{value:,.0f}", f"{rates['ratio_to_c_clients'].get(name, float('nan')):.2f}"]
        for name, value in rates["per_s"].items()
    ]
    body = (
        f"Faces of the first {sizes['frames']} frames of the bundled clip ({sizes['faces']} faces, "
        f"{sizes['faces_per_frame']:.1f} per frame).\n\n"
        + table(["what goes on the network per face", "bytes", "× the embedding message"], byte_rows)
        + f"\n\n{rates['messages']:,} messages of {rates['payload_bytes']} bytes, QoS 1, one local mosquitto:\n\n"
        + table(["publisher → subscriber", "messages/s", "÷ C clients (same run)"], rate_rows)
    )
    publish("wire", data, command, body)


def classifier(data: dict[str, Any], command: str) -> None:
    index_rows = [
        [f"{r['size']:,}", r["index"], r["omp_threads"], f"{r['build_s']:.2f}", f"{r['single_ms']:.3f}",
         f"{r['batched_ms']:.4f}",
         f"{r['recall_at_1']:.3f}"]
        for r in data["index"]
    ]  # fmt: skip
    broker_rows = [
        [f"{r['size']:,}", r["index"], r["batch_max"], r["replicas"], r["omp_threads"], f"{r['results_per_s']:,.0f}",
         f"{r['ratio_to_broker_only']:.2f}"]
        for r in data["broker"]
    ]  # fmt: skip
    http_rows = [
        [
            f"{r['size']:,}",
            f"{r['requests_per_s']:,.0f}",
            f"{r['facewire_per_s']:,.0f}",
            f"{r['ratio_facewire_to_http']:.1f}×",
        ]
        for r in data["seed_http"]
    ]
    body = (
        f"Synthetic {data['dim']}-d galleries (5 photos per person, same-person cosine ≈ 0.6); probes are new "
        "photos of enrolled people.\n\nSearch cost in one process (top-5; recall@1 against flat):\n\n"
        + table(
            [
                "gallery",
                "index",
                "OpenMP threads",
                "build s",
                "ms/query alone",
                "ms/query in batches of 64",
                "recall@1",
            ],
            index_rows,
        )
        + f"\n\nThrough one local mosquitto, {data['messages']:,} embeddings (fewer above 100k rows) from 4 nodes, "
        "QoS 1 in and out. "
        f"Baseline in the same run: the same payloads through the broker to one subscriber, no classifier: "
        f"{data['broker_only_per_s']:,.0f} msg/s.\n\n"
        + table(
            ["gallery", "index", "batch max", "replicas", "FAISS OpenMP threads", "results/s", "÷ broker only"],
            broker_rows,
        )
        + "\n\nThe seed's way: ThreadingHTTPServer, one JSON embedding per POST (new connection each, 4 client "
        "threads), flat search per request with 1 OpenMP thread (its best case here), same probes; compared "
        "with facewire's best flat single-replica row:\n\n"
        + table(["gallery", "HTTP requests/s", "facewire results/s (best flat row)", "facewire ÷ HTTP"], http_rows)
    )
    publish("classifier", data, command, body)


def rate(value: float | None, otherwise: str) -> str:
    return otherwise if value is None else f"{value:,.0f} faces/s"


def e2e(data: dict[str, Any], command: str) -> None:
    def row(level: dict[str, Any], kind: str) -> list[object]:
        c, r = level["classified_ms"], level["received_ms"]
        return [
            kind, level["nodes"], f"{level['target_per_s']:,.0f}", f"{level['achieved_send_per_s']:,.0f}",
            f"{level['received']}/{level['sent']}", f"{c['p50']:.1f} / {c['p95']:.1f} / {c['p99']:.1f}",
            f"{r['p50']:.1f} / {r['p95']:.1f} / {r['p99']:.1f}", "yes" if level.get("saturated") else "",
        ]  # fmt: skip

    rows = [row(level, "broker only (baseline)") for level in data["broker_only"]]
    rows += [row(level, "facewire") for level in data["levels"]]
    rows += [row(level, "facewire, rising load") for level in data["ramp"]]
    sat = data["saturation_per_s"]
    body = (
        f"Simulated nodes publish synthetic embeddings open-loop to one facewire classifier "
        f"({data['gallery']:,}-row flat gallery) through one local mosquitto. Saturation: highest load that "
        f"kept up: {rate(sat['highest_fine'], 'none of the steps')}; first that did not: "
        f"{rate(sat['first_saturated'], 'none reached')}.\n\n"
        + table(
            [
                "path",
                "nodes",
                "target faces/s",
                "sent/s",
                "results back",
                "ts→classified ms p50/p95/p99",
                "ts→received ms p50/p95/p99",
                "saturated",
            ],
            rows,
        )
    )
    publish("e2e", data, command, body)
