"""Message schema: FaceEmbedding (msgpack) and FaceResult (JSON), versioned and validated.

Decoders never trust a payload: each failure raises :class:`SchemaError` with a
short ``reason`` (``not-msgpack``, ``wrong-type``, ``emb-length``, ...) that
goes into the dead-letter message.
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
import numpy as np

from facewire.errors import SchemaError
from facewire.topics import valid_node_id

SCHEMA_VERSION = 1
MAX_EMBEDDING_BYTES = 64 * 1024
MAX_DIM = 4096
NORM_TOLERANCE = 0.02

EMBEDDING_FIELDS = {"v", "node", "seq", "ts", "frame", "track", "bbox", "det", "quality", "model", "dim", "emb"}


@dataclass(frozen=True)
class FaceEmbedding:
    """One face seen by an edge node: where and when, how good, and its L2-normalised vector."""

    node: str
    seq: int
    ts: float
    frame: int
    track: int
    bbox: tuple[float, float, float, float]
    det: float
    quality: dict[str, float]
    model: str
    emb: np.ndarray = field(repr=False)

    @property
    def dim(self) -> int:
        return int(self.emb.shape[0])

    @property
    def key(self) -> tuple[str, int]:
        """Idempotency key: a redelivered message has the same key."""
        return (self.node, self.seq)

    def to_msgpack(self) -> bytes:
        """Encode as the wire format (embedding as little-endian float16)."""
        return msgpack.packb(
            {
                "v": SCHEMA_VERSION,
                "node": self.node,
                "seq": self.seq,
                "ts": self.ts,
                "frame": self.frame,
                "track": self.track,
                "bbox": [float(x) for x in self.bbox],
                "det": float(self.det),
                "quality": {k: float(v) for k, v in self.quality.items()},
                "model": self.model,
                "dim": self.dim,
                "emb": np.asarray(self.emb, dtype="<f2").tobytes(),
            },
            use_bin_type=True,
        )

    @classmethod
    def from_msgpack(cls, payload: bytes) -> FaceEmbedding:
        """Decode and validate a wire payload; raise SchemaError with the reason otherwise."""
        if len(payload) > MAX_EMBEDDING_BYTES:
            raise SchemaError("oversize", f"{len(payload)} bytes > {MAX_EMBEDDING_BYTES}")
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise SchemaError("not-msgpack", str(exc)[:120]) from exc
        if not isinstance(data, dict):
            raise SchemaError("wrong-type", "payload is not a map")
        _check_version(data)
        missing = EMBEDDING_FIELDS - data.keys()
        if missing:
            raise SchemaError("missing-field", ", ".join(sorted(missing)))
        dim = _int(data, "dim", 1, MAX_DIM)
        raw = data["emb"]
        if not isinstance(raw, bytes):
            raise SchemaError("wrong-type", "emb must be bytes")
        if len(raw) != 2 * dim:
            raise SchemaError("emb-length", f"{len(raw)} bytes for dim {dim} (expected {2 * dim})")
        emb = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        _check_vector(emb)
        return cls(
            node=_node(data),
            seq=_int(data, "seq", 0, 2**63 - 1),
            ts=_float(data, "ts"),
            frame=_int(data, "frame", 0, 2**63 - 1),
            track=_int(data, "track", 0, 2**63 - 1),
            bbox=_bbox(data),
            det=_float(data, "det"),
            quality=_quality(data),
            model=_text(data, "model"),
            emb=emb,
        )


@dataclass(frozen=True)
class Candidate:
    """One enrolled person near a probe embedding."""

    name: str
    score: float


@dataclass(frozen=True)
class FaceResult:
    """The classifier's answer for one FaceEmbedding, published as JSON."""

    node: str
    seq: int
    track: int
    frame: int
    ts: float
    name: str
    score: float
    known: bool
    threshold: float
    model: str
    gallery_version: str
    classified_at: float
    latency_ms: float
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    candidates: tuple[Candidate, ...] = ()
    v: int = SCHEMA_VERSION

    @property
    def key(self) -> tuple[str, int]:
        return (self.node, self.seq)

    def to_json(self) -> bytes:
        """Encode as compact UTF-8 JSON, readable with ``mosquitto_sub``."""
        data = asdict(self)
        data["bbox"] = [round(float(x), 1) for x in self.bbox]
        data["score"] = round(self.score, 5)
        data["candidates"] = [{"name": c.name, "score": round(c.score, 5)} for c in self.candidates]
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> FaceResult:
        """Decode and validate a FaceResult; raise SchemaError with the reason otherwise."""
        data = _json_map(payload)
        _check_version(data)
        try:
            candidates = tuple(Candidate(str(c["name"]), float(c["score"])) for c in data.get("candidates", []))
        except (TypeError, KeyError, ValueError) as exc:
            raise SchemaError("wrong-type", "candidates") from exc
        known = data.get("known")
        if not isinstance(known, bool):
            raise SchemaError("wrong-type", "known must be a boolean")
        return cls(
            node=_node(data),
            seq=_int(data, "seq", 0, 2**63 - 1),
            track=_int(data, "track", 0, 2**63 - 1),
            frame=_int(data, "frame", 0, 2**63 - 1),
            ts=_float(data, "ts"),
            name=_text(data, "name"),
            score=_float(data, "score"),
            known=known,
            threshold=_float(data, "threshold"),
            model=_text(data, "model"),
            gallery_version=_text(data, "gallery_version"),
            classified_at=_float(data, "classified_at"),
            latency_ms=_float(data, "latency_ms"),
            bbox=_bbox(data),
            candidates=candidates,
        )


@dataclass(frozen=True)
class Evidence:
    """One result that contributed to an alert."""

    node: str
    seq: int
    track: int
    name: str
    score: float
    ts: float


@dataclass(frozen=True)
class Alert:
    """One incident raised by the alert service, published as JSON on ``<prefix>/alerts/<node>``.

    ``id`` is the incident key: a redelivered or replicated alert has the same id.
    """

    id: str
    rule: str
    node: str
    subject: str
    message: str
    ts: float
    raised_at: float
    evidence: tuple[Evidence, ...] = ()
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        data = asdict(self)
        data["evidence"] = [{**asdict(e), "score": round(e.score, 5)} for e in self.evidence]
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Alert:
        """Decode and validate an Alert; raise SchemaError with the reason otherwise."""
        data = _json_map(payload)
        _check_version(data)
        raw = data.get("evidence", [])
        if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
            raise SchemaError("wrong-type", "evidence must be a list of objects")
        evidence = tuple(
            Evidence(
                node=_node(e),
                seq=_int(e, "seq", 0, 2**63 - 1),
                track=_int(e, "track", 0, 2**63 - 1),
                name=_text(e, "name"),
                score=_float(e, "score"),
                ts=_float(e, "ts"),
            )
            for e in raw
        )
        return cls(
            id=_text(data, "id"),
            rule=_text(data, "rule"),
            node=_node(data),
            subject=_text(data, "subject"),
            message=_text(data, "message"),
            ts=_float(data, "ts"),
            raised_at=_float(data, "raised_at"),
            evidence=evidence,
        )


def _json_map(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("not-json", str(exc)[:120]) from exc
    if not isinstance(data, dict):
        raise SchemaError("wrong-type", "payload is not an object")
    return data


def _check_version(data: dict[str, Any]) -> None:
    version = data.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError("missing-version" if version is None else "wrong-type", "v")
    if version != SCHEMA_VERSION:
        raise SchemaError("unknown-version", f"v={version}, this build reads v={SCHEMA_VERSION}")


def _check_vector(emb: np.ndarray) -> None:
    if not np.all(np.isfinite(emb)):
        raise SchemaError("not-finite", "emb contains NaN or inf")
    norm = float(np.linalg.norm(emb))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise SchemaError("not-normalised", f"|emb| = {norm:.4f}")


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError("wrong-type", f"{key} must be an integer")
    if not low <= value <= high:
        raise SchemaError("out-of-range", f"{key}={value}")
    return value


def _float(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError("wrong-type", f"{key} must be a number")
    if not math.isfinite(value):
        raise SchemaError("not-finite", key)
    return float(value)


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise SchemaError("wrong-type", f"{key} must be a non-empty string")
    return value


def _node(data: dict[str, Any]) -> str:
    node = _text(data, "node")
    if not valid_node_id(node):
        raise SchemaError("bad-node", repr(node[:64]))
    return node


def _bbox(data: dict[str, Any]) -> tuple[float, float, float, float]:
    box = data.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise SchemaError("wrong-type", "bbox must be [x, y, w, h]")
    values = {f"bbox[{i}]": v for i, v in enumerate(box)}
    x, y, w, h = (_float(values, f"bbox[{i}]") for i in range(4))
    return (x, y, w, h)


def _quality(data: dict[str, Any]) -> dict[str, float]:
    quality = data.get("quality")
    if not isinstance(quality, dict) or len(quality) > 32:
        raise SchemaError("wrong-type", "quality must be a small map")
    return {str(k): _float(quality, k) for k in quality}


@dataclass(frozen=True)
class DeadLetter:
    """A message a service could not use: why, where it came from and a short excerpt of it."""

    reason: str
    detail: str
    topic: str
    payload: bytes

    def to_json(self, service: str) -> bytes:
        return json.dumps(
            {
                "service": service,
                "reason": self.reason,
                "detail": self.detail,
                "topic": self.topic,
                "size": len(self.payload),
                "excerpt_b64": base64.b64encode(self.payload[:96]).decode(),
                "ts": time.time(),
            }
        ).encode()
