"""Edge benchmark: frames/s on the bundled clip per detector, embedder and thread count.

Each combination runs in its own process (so peak RSS and thread settings are its own) and
reports ms per stage: decode, detect, align (crop + quality), embed, track (+ dedup), publish
(msgpack + MQTT publish to a real local mosquitto). Baseline in the same run: decoding alone.

``default``: the facewire pipeline (EdgePipeline: embed every face, track, publish only new or
changed faces). ``seed``: the seed's design: Haar cascade, embed every face every frame, publish
every face, no tracking.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import machine

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "sample" / "short_hamilton_clip.mp4"
DETECTORS = ("yunet", "haar", "mediapipe")


class Stages:
    """Accumulated wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, stage: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return wrapper


def decode_only(frames: int) -> dict[str, float]:
    """Baseline: frames/s of decoding the clip alone."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    start, count = time.perf_counter(), 0
    while count < frames and capture.read()[0]:
        count += 1
    return {"frames": count, "fps": count / (time.perf_counter() - start)}


def measure(style: str, detector: str, threads: int, frames: int, url: str) -> dict[str, Any]:
    """Run one combination on the clip (in this process) and return its numbers."""
    import cv2

    from edge_agent.pipeline import EdgePipeline
    from facewire.config import EdgeSettings, ModelSettings, MqttSettings
    from facewire.faces import create_analyzer
    from facewire.mqtt import MqttConnection
    from facewire.schema import FaceEmbedding
    from facewire.sources import Frame

    analyzer = create_analyzer(ModelSettings(detector=detector, threads=threads), det_threshold=0.7, min_face=40)
    stages = Stages()
    analyzer.detector.detect = stages.timed("detect", analyzer.detector.detect)  # type: ignore[method-assign]
    faces_call = stages.timed("faces", analyzer.faces)
    analyzer.faces = faces_call  # type: ignore[method-assign]
    analyzer.embed = stages.timed("embed", analyzer.embed)  # type: ignore[method-assign]
    connection = MqttConnection(MqttSettings(url=url), f"bench-edge-{style}-{detector}-{threads}")
    connection.connect()
    seq = iter(range(10**9))
    pipeline = EdgePipeline(analyzer, EdgeSettings(node_id="bench"), lambda: next(seq))
    capture = cv2.VideoCapture(str(CLIP))
    counts = {"frames": 0, "faces": 0, "published": 0}
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    while counts["frames"] < frames:
        t0 = time.perf_counter()
        ok, image = capture.read()
        stages.seconds["decode"] += time.perf_counter() - t0
        if not ok:
            break
        frame = Frame(image=image, ts=time.time(), index=counts["frames"])
        counts["frames"] += 1
        t0 = time.perf_counter()
        if style == "default":
            messages = pipeline.process(frame)
        else:  # the seed's way: every face embedded and sent, every frame
            faces = analyzer.analyze(image)
            messages = [
                FaceEmbedding("bench", next(seq), frame.ts, frame.index, 0, f.detection.bbox, f.detection.score,
                              f.quality, analyzer.embedder.model_id, f.embedding)
                for f in faces if f.embedding is not None
            ]  # fmt: skip
        stages.seconds["process"] += time.perf_counter() - t0
        counts["faces"] += len(messages) if style == "seed" else 0
        t0 = time.perf_counter()
        for message in messages:
            connection.publish("facewire/embeddings/bench", message.to_msgpack())
        stages.seconds["publish"] += time.perf_counter() - t0
        counts["published"] += len(messages)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    connection.close()
    if style == "default":
        counts["faces"] = pipeline.counters.faces
    seconds = dict(stages.seconds)
    stage_ms = {
        "decode": seconds["decode"],
        "detect": seconds["detect"],
        "align": seconds["faces"] - seconds["detect"],
        "embed": seconds["embed"],
        "track": seconds["process"] - seconds["faces"] - seconds["embed"],
        "publish": seconds["publish"],
    }
    return {
        "style": style,
        "detector": detector,
        "embedder": analyzer.embedder.model_id,
        "threads": threads,
        **counts,
        "seconds": wall,
        "fps": counts["frames"] / wall,
        "faces_per_s": counts["faces"] / wall,
        "ms_per_frame": {k: 1000 * v / max(counts["frames"], 1) for k, v in stage_ms.items()},
        "cpu_seconds": (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime),
        "cpu_per_wall": ((after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)) / wall,
        "peak_rss_mb": after.ru_maxrss / 1024,
    }


def run_one(style: str, detector: str, threads: int, frames: int, url: str) -> dict[str, Any]:
    """``measure`` in a fresh process; {"error": ...} when the combination cannot run here."""
    spec = json.dumps({"style": style, "detector": detector, "threads": threads, "frames": frames, "url": url})
    done = subprocess.run(
        [sys.executable, "-m", "bench.edge", spec], capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"style": style, "detector": detector, "threads": threads, "error": reason[:300]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def combinations(quick: bool) -> list[tuple[str, str, int]]:
    """(style, detector, threads) to run: every detector with the default pipeline, plus the seed's way."""
    if quick:
        return [("default", "yunet", 1), ("default", "yunet", 2), ("default", "haar", 1),
                ("default", "mediapipe", 1), ("seed", "haar", 1)]  # fmt: skip
    return [("default", d, t) for d in DETECTORS for t in (1, 2)] + [("seed", "haar", 1), ("seed", "haar", 2)]


def run(quick: bool, frames: int | None = None) -> dict[str, Any]:
    """Every combination beside the decode-only baseline; the dict written to bench/results/edge.json."""
    from facewire.broker import LocalBroker

    limit = frames or (120 if quick else 10_000)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        baseline = decode_only(limit)
        rows = [run_one(style, det, threads, limit, broker.url) for style, det, threads in combinations(quick)]
    default = next((r for r in rows if r.get("style") == "default" and r.get("detector") == "yunet"), None)
    for row in rows:
        if "fps" in row:
            row["ratio_to_decode"] = row["fps"] / baseline["fps"]
            row["ratio_to_default"] = row["fps"] / default["fps"] if default and "fps" in default else None
    return {"clip": str(CLIP.relative_to(ROOT)), "decode_only": baseline, "runs": rows, "cores": machine()["cores"]}


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(json.dumps(measure(args["style"], args["detector"], args["threads"], args["frames"], args["url"])))
