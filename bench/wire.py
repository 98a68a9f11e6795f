"""Wire benchmark: bytes per face on the network, and messages/s one mosquitto carries.

Bytes: for the same faces of the bundled clip (YuNet), facewire's FaceEmbedding message vs a
JPEG of the face box (what an edge+cloud design sends; quality 90 and 75) vs the whole frame as
JPEG and the clip's own H.264 bytes per frame (the raw camera stream).

Rate: QoS 1 payloads of facewire's message size through one local mosquitto, (a) facewire's
Python publisher -> Python subscriber, (b) Python publisher -> ``mosquitto_sub``, (c)
``mosquitto_pub -l`` -> ``mosquitto_sub`` (the C clients: the broker's ceiling), in the same run.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import Counter
from facewire.config import ModelSettings, MqttSettings
from facewire.faces import create_analyzer
from facewire.mqtt import MqttConnection, parse_broker_url
from facewire.schema import FaceEmbedding
from facewire_console.broker import LocalBroker

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "data" / "sample" / "short_hamilton_clip.mp4"
TOPIC = "facewire/bench/wire"


def jpeg_bytes(image: np.ndarray, quality: int) -> int:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return len(data)


def box_crop(image: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = (round(v) for v in bbox)
    height, width = image.shape[:2]
    return image[max(0, y) : min(height, y + h), max(0, x) : min(width, x + w)]


def bytes_per_face(frames: int) -> dict[str, Any]:
    """Mean bytes per face of each representation over the faces in the first ``frames`` frames."""
    analyzer = create_analyzer(ModelSettings(), det_threshold=0.7, min_face=40)
    capture = cv2.VideoCapture(str(CLIP))
    total_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    sizes: dict[str, list[int]] = {"message": [], "crop_q90": [], "crop_q75": [], "aligned_q90": []}
    frame_jpeg, faces_seen, index = [], 0, 0
    while index < frames:
        ok, image = capture.read()
        if not ok:
            break
        faces = analyzer.analyze(image)
        frame_jpeg.append(jpeg_bytes(image, 90))
        faces_seen += len(faces)
        for face in faces:
            assert face.embedding is not None
            message = FaceEmbedding(
                "cam-01", 123456 + index, time.time(), index, 17, face.detection.bbox, face.detection.score,
                face.quality, analyzer.embedder.model_id, face.embedding,
            )  # fmt: skip
            crop = box_crop(image, face.detection.bbox)
            sizes["message"].append(len(message.to_msgpack()))
            sizes["crop_q90"].append(jpeg_bytes(crop, 90))
            sizes["crop_q75"].append(jpeg_bytes(crop, 75))
            sizes["aligned_q90"].append(jpeg_bytes(face.crop, 90))
        index += 1
    faces_per_frame = faces_seen / max(index, 1)
    stream_per_frame = CLIP.stat().st_size / total_frames
    return {
        "frames": index,
        "faces": faces_seen,
        "faces_per_frame": faces_per_frame,
        "mean_bytes": {name: float(np.mean(values)) for name, values in sizes.items() if values},
        "frame_jpeg_q90_bytes": float(np.mean(frame_jpeg)),
        "frame_jpeg_q90_per_face": float(np.mean(frame_jpeg)) / max(faces_per_frame, 1e-9),
        "h264_bytes_per_frame": stream_per_frame,
        "h264_per_face": stream_per_frame / max(faces_per_frame, 1e-9),
    }


def python_rate(url: str, payloads: list[bytes], subscriber: str, bulk_reads: bool = True) -> float:
    """QoS 1 messages/s from facewire's publisher to a Python or a mosquitto_sub subscriber (``bulk_reads``:
    facewire's bulk socket reader, else paho's own, in the Python clients)."""
    address = parse_broker_url(url)
    count = len(payloads)
    if subscriber == "python":
        counter = Counter(url, TOPIC, count, bulk_reads)
        counter.connection.connect()
        time.sleep(0.3)
    else:
        sub = mosquitto_sub(address.host, address.port, count)
    publisher = MqttConnection(MqttSettings(url=url, bulk_reads=bulk_reads), "bench-wire-publisher")
    publisher.connect()
    start = time.perf_counter()
    for payload in payloads:
        publisher.publish(TOPIC, payload)
    if subscriber == "python":
        counter.done.wait(300)
        elapsed, received = counter.last - start, counter.count
        counter.connection.close()
    else:
        sub.wait(300)
        elapsed, received = time.perf_counter() - start, count if sub.returncode == 0 else 0
    publisher.close()
    return received / elapsed


def mosquitto_sub(host: str, port: int, count: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["mosquitto_sub", "-h", host, "-p", str(port), "-t", TOPIC, "-q", "1", "-C", str(count), "-i", "bench-sub"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # let it subscribe
    return process


def c_clients_rate(url: str, size: int, count: int) -> float:
    """QoS 1 messages/s of ``mosquitto_pub -l`` (one message per stdin line) to ``mosquitto_sub -C``."""
    address = parse_broker_url(url)
    lines = (b"x" * (size - 1) + b"\n") * count
    sub = mosquitto_sub(address.host, address.port, count)
    start = time.perf_counter()
    pub = subprocess.Popen(
        ["mosquitto_pub", "-h", address.host, "-p", str(address.port), "-t", TOPIC, "-q", "1", "-l", "-i", "bench-pub"],
        stdin=subprocess.PIPE,
    )
    pub.communicate(lines, timeout=300)
    sub.wait(300)
    elapsed = time.perf_counter() - start
    return count / elapsed if sub.returncode == 0 else 0.0


def run(quick: bool, messages: int | None = None, frames: int | None = None) -> dict[str, Any]:
    """Bytes per face and the three broker rates; the dict written to bench/results/wire.json."""
    sizes = bytes_per_face(frames or (60 if quick else 275))
    count = messages or (5_000 if quick else 20_000)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payloads = [
        FaceEmbedding("cam-01", i, time.time(), i, 1, (10, 20, 80, 80), 0.9, {"size": 80.0}, "sface-2021dec", v)
        .to_msgpack()
        for i, v in enumerate(vectors)
    ]  # fmt: skip
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        rates["python_pub_to_python_sub"] = python_rate(broker.url, payloads, "python")
        rates["python_pub_to_python_sub_paho_reader"] = python_rate(broker.url, payloads, "python", bulk_reads=False)
        if shutil.which("mosquitto_sub") and shutil.which("mosquitto_pub"):
            rates["python_pub_to_mosquitto_sub"] = python_rate(broker.url, payloads, "mosquitto_sub")
            rates["mosquitto_pub_to_mosquitto_sub"] = c_clients_rate(broker.url, len(payloads[0]), count)
    ceiling = rates.get("mosquitto_pub_to_mosquitto_sub")
    return {
        "bytes": sizes,
        "rates": {
            "messages": count,
            "payload_bytes": len(payloads[0]),
            "qos": 1,
            "per_s": rates,
            "ratio_to_c_clients": {k: v / ceiling for k, v in rates.items()} if ceiling else {},
        },
    }
