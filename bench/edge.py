"""Edge benchmark: frames/s on the bundled clip per pipeline, detector and thread count.

Each combination runs in its own process (so peak RSS and thread settings are its own) and reports
ms per stage: decode, detect, align (crop + quality), embed, track (+ gates, dedup), publish (msgpack +
MQTT publish to a real local mosquitto), faces detected / gated / embedded / published, and the names
the sample gallery gives the clip's faces (bench.edge_names; judged outside the timed work).

Pipelines:

- ``naive``: the baseline every ratio is taken to: OpenCV's own ``FaceDetectorYN`` and
  ``FaceRecognizerSF`` (alignCrop + feature) on every face of at least ``min_face`` in every frame, with
  the same YuNet and SFace files; nothing tracked or published.
- ``every-face``: facewire's pipeline before issue 20: every face of at least ``min_face`` embedded in
  every frame (onnxruntime SFace), tracked, near-duplicates not published.
- ``default``: facewire's EdgePipeline: track first, gate, embed a track's first, clearly better or
  refreshed face, publish what is not a near-duplicate.
- ``seed``: the seed's design: Haar cascade, every face embedded and published every frame, no tracking.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import machine

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "sample" / "short_hamilton_clip.mp4"
DETECTORS = ("yunet", "haar", "mediapipe")
MIN_FACE, DET_THRESHOLD = 40, 0.7  # the edge's defaults (EdgeSettings)


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


def clip_frames(limit: int, stages: Stages) -> Iterator[tuple[int, Any]]:
    """(index, BGR image) of the clip's first ``limit`` frames, decoding timed as the ``decode`` stage."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    for index in range(limit):
        start = time.perf_counter()
        ok, image = capture.read()
        stages.seconds["decode"] += time.perf_counter() - start
        if not ok:
            return
        yield index, image


def measure_naive(threads: int, frames: int) -> dict[str, Any]:
    """OpenCV's FaceDetectorYN + FaceRecognizerSF on every face of every frame (the same model files and
    ``min_face`` as facewire's rows, so all embed the same faces)."""
    import cv2

    from bench.edge_names import NameLog, sample_matcher
    from facewire.config import ModelSettings
    from facewire.faces import create_analyzer
    from facewire.models.registry import SFACE, YUNET, package_file

    assert YUNET.file is not None and SFACE.file is not None
    cv2.setNumThreads(threads)
    detector = cv2.FaceDetectorYN.create(str(package_file(YUNET.file)), "", (320, 320), DET_THRESHOLD, 0.3, 5000)
    recognizer = cv2.FaceRecognizerSF.create(str(package_file(SFACE.file)), "")
    names = NameLog(sample_matcher(create_analyzer(ModelSettings(threads=threads), DET_THRESHOLD, MIN_FACE)))
    stages, counts = Stages(), {"frames": 0, "faces": 0, "embedded": 0, "published": 0}
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for index, image in clip_frames(frames, stages):
        counts["frames"] += 1
        t0 = time.perf_counter()
        detector.setInputSize((image.shape[1], image.shape[0]))
        _, rows = detector.detect(image)
        t1 = time.perf_counter()
        rows = [row for row in ([] if rows is None else rows) if min(row[2], row[3]) >= MIN_FACE]
        crops = [recognizer.alignCrop(image, row) for row in rows]
        t2 = time.perf_counter()
        vectors = [recognizer.feature(crop).ravel() for crop in crops]
        t3 = time.perf_counter()
        for stage, seconds in (("detect", t1 - t0), ("align", t2 - t1), ("embed", t3 - t2)):
            stages.seconds[stage] += seconds
        counts["faces"] += len(crops)
        counts["embedded"] += len(crops)
        t0 = time.perf_counter()
        messages = [
            naive_message(index, counts["embedded"] + i, row, vector)
            for i, (row, vector) in enumerate(zip(rows, vectors, strict=True))
        ]
        names.frame(index, messages, [m.track for m in messages])
        stages.seconds["names"] += time.perf_counter() - t0
    return finish(
        {"style": "naive", "detector": "yunet (cv2.FaceDetectorYN)", "embedder": "sface (cv2.FaceRecognizerSF)"},
        threads, counts, stages, usage, start, names.summary(), {},
    )  # fmt: skip


def naive_message(frame: int, seq: int, row: Any, vector: Any) -> Any:
    """A FaceEmbedding of one naive face (its own track), to judge its name like facewire's faces."""
    from facewire.models.registry import SFACE
    from facewire.schema import FaceEmbedding

    box = (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
    unit = vector / max(float((vector**2).sum()) ** 0.5, 1e-12)
    return FaceEmbedding("bench", seq, 0.0, frame, seq, box, float(row[14]), {"size": min(box[2:])}, SFACE.id, unit)


def measure(style: str, detector: str, threads: int, frames: int, url: str) -> dict[str, Any]:
    """Run one facewire combination on the clip (in this process) and return its numbers."""
    from bench.edge_names import NameLog, sample_matcher
    from edge_agent.pipeline import EdgePipeline
    from facewire.config import EdgeSettings, ModelSettings, MqttSettings
    from facewire.faces import create_analyzer
    from facewire.mqtt import MqttConnection
    from facewire.sources import Frame

    analyzer = create_analyzer(ModelSettings(detector=detector, threads=threads), DET_THRESHOLD, MIN_FACE)
    names = NameLog(sample_matcher(analyzer))
    stages = Stages()
    analyzer.detector.detect = stages.timed("detect", analyzer.detector.detect)  # type: ignore[method-assign]
    analyzer.prepare = stages.timed("align", analyzer.prepare)  # type: ignore[method-assign]
    analyzer.embed = stages.timed("embed", analyzer.embed)  # type: ignore[method-assign]
    connection = MqttConnection(MqttSettings(url=url), f"bench-edge-{style}-{detector}-{threads}")
    connection.connect()
    seq = iter(range(10**9))
    pipeline = EdgePipeline(analyzer, EdgeSettings(node_id="bench", min_face=MIN_FACE), lambda: next(seq))
    process = {"default": pipeline.process, "every-face": every_face(pipeline), "seed": seed(pipeline)}[style]
    counts = {"frames": 0}
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for index, image in clip_frames(frames, stages):
        frame = Frame(image=image, ts=time.time(), index=index)
        counts["frames"] += 1
        t0 = time.perf_counter()
        messages = process(frame)
        stages.seconds["process"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for message in messages:
            connection.publish("facewire/embeddings/bench", message.to_msgpack())
        stages.seconds["publish"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        names.frame(index, messages, [face.track for face in pipeline.last_faces])
        stages.seconds["names"] += time.perf_counter() - t0
    connection.close()
    c = pipeline.counters
    counts.update(faces=c.faces, embedded=c.embedded, published=c.published)
    extra = {"gated": dict(c.gated), "half_size_frames": pipeline.detection.half_size_frames}
    info = {"style": style, "detector": detector, "embedder": analyzer.embedder.model_id}
    return finish(info, threads, counts, stages, usage, start, names.summary(), extra)


def every_face(pipeline: Any) -> Callable[[Any], list[Any]]:
    """The pre-issue-20 pipeline on ``pipeline``'s parts: embed every face of every frame, then track and dedup."""
    from edge_agent.pipeline import TrackedFace, face_message

    def process(frame: Any) -> list[Any]:
        counters, settings, tracker = pipeline.counters, pipeline.settings, pipeline.tracker
        counters.frames += 1
        faces = pipeline.analyzer.faces(frame.image)
        pipeline.analyzer.embed(faces)
        counters.faces += len(faces)
        counters.embedded += len(faces)
        messages, pipeline.last_faces = [], []
        for face, track in zip(faces, tracker.update([f.detection.bbox for f in faces], frame.ts), strict=True):
            if tracker.should_publish(track, face.embedding, frame.ts, settings.dedup_cosine, settings.refresh_seconds):
                seq = pipeline.next_seq()
                pipeline.last_faces.append(TrackedFace(face.detection.bbox, track, seq))
                messages.append(face_message("bench", face_model(pipeline), frame, face, track, seq))
            else:
                pipeline.last_faces.append(TrackedFace(face.detection.bbox, track, None))
                counters.duplicates += 1
        counters.published += len(messages)
        return messages

    return process


def seed(pipeline: Any) -> Callable[[Any], list[Any]]:
    """The seed's way on ``pipeline``'s parts: every face embedded and sent, every frame, one track per face."""
    from edge_agent.pipeline import TrackedFace, face_message

    def process(frame: Any) -> list[Any]:
        counters, analyzer = pipeline.counters, pipeline.analyzer
        faces = analyzer.analyze(frame.image)
        counters.frames += 1
        counters.faces += len(faces)
        counters.embedded += len(faces)
        counters.published += len(faces)
        seqs = [pipeline.next_seq() for _face in faces]
        messages = [
            face_message("bench", face_model(pipeline), frame, f, q, q) for f, q in zip(faces, seqs, strict=True)
        ]
        pipeline.last_faces = [TrackedFace(f.detection.bbox, q, q) for f, q in zip(faces, seqs, strict=True)]
        return messages

    return process


def face_model(pipeline: Any) -> str:
    return str(pipeline.analyzer.embedder.model_id)


def finish(
    info: dict[str, Any],
    threads: int,
    counts: dict[str, int],
    stages: Stages,
    usage: resource.struct_rusage,
    start: float,
    names: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The row of one run: the names' judging is not part of the edge's work, so its time is left out."""
    seconds = dict(stages.seconds)
    wall = time.perf_counter() - start - seconds.get("names", 0.0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime) - seconds.get("names", 0.0)
    inside = seconds.get("detect", 0.0) + seconds.get("align", 0.0) + seconds.get("embed", 0.0)
    stage_s = {
        "decode": seconds.get("decode", 0.0),
        "detect": seconds.get("detect", 0.0),
        "align": seconds.get("align", 0.0),
        "embed": seconds.get("embed", 0.0),
        "track": max(0.0, seconds.get("process", inside) - inside),
        "publish": seconds.get("publish", 0.0),
    }
    n = max(counts["frames"], 1)
    return {
        **info,
        "threads": threads,
        **counts,
        **extra,
        "names": names,
        "seconds": wall,
        "fps": counts["frames"] / wall,
        "frames_per_cpu_s": counts["frames"] / cpu if cpu > 0 else 0.0,
        "faces_per_s": counts["embedded"] / wall,
        "ms_per_frame": {k: 1000 * v / n for k, v in stage_s.items()},
        "cpu_seconds": cpu,
        "cpu_per_wall": cpu / wall,
        "peak_rss_mb": after.ru_maxrss / 1024,
    }


def run_one(style: str, detector: str, threads: int, frames: int, url: str) -> dict[str, Any]:
    """``measure`` in a fresh process; {"error": ...} when the combination cannot run here."""
    spec = json.dumps({"style": style, "detector": detector, "threads": threads, "frames": frames, "url": url})
    done = subprocess.run(
        [sys.executable, "-m", "bench.edge", spec], capture_output=True, text=True, cwd=ROOT, timeout=1800
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"style": style, "detector": detector, "threads": threads, "error": reason[:300]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def combinations(quick: bool) -> list[tuple[str, str, int]]:
    """(style, detector, threads) to run: the naive baseline first, then facewire's pipelines."""
    if quick:
        return [("naive", "yunet", 1), ("every-face", "yunet", 1), ("default", "yunet", 1),
                ("default", "yunet", 2), ("default", "haar", 1), ("default", "mediapipe", 1)]  # fmt: skip
    return (
        [("naive", "yunet", 1), ("every-face", "yunet", 1), ("every-face", "yunet", 2)]
        + [("default", d, t) for d in DETECTORS for t in (1, 2)]
        + [("seed", "haar", 1)]
    )


def run(quick: bool, frames: int | None = None) -> dict[str, Any]:
    """Every combination; each row's frames/s over the naive baseline's of the same run (``ratio_to_naive``)
    and over the pre-issue-20 pipeline's (``ratio_to_every_face``), in wall time and in CPU time (on a
    shared machine a run may wait for the CPU; frames per CPU second count only the work done)."""
    from facewire_console.broker import LocalBroker

    limit = frames or (120 if quick else 10_000)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        rows = [run_one(style, det, threads, limit, broker.url) for style, det, threads in combinations(quick)]
    naive = next((r for r in rows if r.get("style") == "naive" and "fps" in r), None)
    before = next((r for r in rows if r.get("style") == "every-face" and r.get("threads") == 1 and "fps" in r), None)
    for row in rows:
        for key, other in (("naive", naive), ("every_face", before)):
            if "fps" in row and other is not None:
                row[f"ratio_to_{key}"] = row["fps"] / other["fps"]
                row[f"cpu_ratio_to_{key}"] = row["frames_per_cpu_s"] / other["frames_per_cpu_s"]
    return {"clip": str(CLIP.relative_to(ROOT)), "min_face": MIN_FACE, "runs": rows, "cores": machine()["cores"]}


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    if args["style"] == "naive":
        print(json.dumps(measure_naive(args["threads"], args["frames"])))
    else:
        print(json.dumps(measure(args["style"], args["detector"], args["threads"], args["frames"], args["url"])))
