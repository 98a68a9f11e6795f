"""Message schema: FaceEmbedding (msgpack) and FaceResult (JSON), versioned and validated.

Decoders never trust a payload: each failure raises :class:`SchemaError` with a
short ``reason`` (``not-msgpack``, ``wrong-type``, ``emb-length``, ...) that
goes into the dead-letter message.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
import numpy as np

from facewire.errors import SchemaError
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_EMBEDDING_BYTES = 64 * 1024
MAX_DIM = 4096
MAX_JSON_BYTES = 64 * 1024
MAX_CANDIDATES = 100
MAX_EVIDENCE = 1000
EXCERPT_BYTES = 96
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
        read.check_version(data)
        missing = EMBEDDING_FIELDS - data.keys()
        if missing:
            raise SchemaError("missing-field", ", ".join(sorted(missing)))
        dim = read.integer(data, "dim", 1, MAX_DIM)
        raw = data["emb"]
        if not isinstance(raw, bytes):
            raise SchemaError("wrong-type", "emb must be bytes")
        if len(raw) != 2 * dim:
            raise SchemaError("emb-length", f"{len(raw)} bytes for dim {dim} (expected {2 * dim})")
        emb = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        _check_vector(emb)
        plain = _plain_fields(data)
        if plain is not None:
            return cls(*plain, emb=emb)
        return cls(  # one field or more is not of the usual kind: each is read and checked for its reason
            node=read.node(data),
            seq=read.integer(data, "seq"),
            ts=read.number(data, "ts"),
            frame=read.integer(data, "frame"),
            track=read.integer(data, "track"),
            bbox=read.bbox(data),
            det=read.number(data, "det"),
            quality=read.number_map(data, "quality"),
            model=read.text(data, "model"),
            emb=emb,
        )


PlainFields = tuple[str, int, float, int, int, tuple[float, float, float, float], float, dict[str, float], str]


def _plain_fields(data: dict[str, Any]) -> PlainFields | None:
    """The fields after ``emb`` in FaceEmbedding's order, when each is of the kind an edge node writes and
    valid (integers in range, finite floats, a valid node and model name); None for anything else, which
    ``from_msgpack`` then reads field by field with the ``facewire.schema.fields`` readers for the reason.
    The same checks at a fraction of the cost per message (issue 21): exact types, one ``isfinite`` per group
    of floats (a sum of finite floats is finite unless it overflows; then the readers decide) and the node
    and model names checked once each while they recur."""
    node, seq, ts, frame, track = data["node"], data["seq"], data["ts"], data["frame"], data["track"]
    box, det, quality, model = data["bbox"], data["det"], data["quality"], data["model"]
    if not (
        type(seq) is int  # exact types: a bool is an int, and is refused
        and type(frame) is int
        and type(track) is int
        and 0 <= seq <= read.INT64_MAX
        and 0 <= frame <= read.INT64_MAX
        and 0 <= track <= read.INT64_MAX
        and type(ts) is float
        and type(det) is float
        and type(box) is list
        and len(box) == 4
        and type(quality) is dict
        and len(quality) <= 32
        and all(type(x) is float for x in box)
        and all(type(k) is str and type(x) is float for k, x in quality.items())
        and math.isfinite(ts + det + sum(box) + sum(quality.values()))
        and type(node) is str
        and type(model) is str
        and _valid_text("node", node)
        and _valid_text("model", model)
    ):
        return None
    return node, seq, ts, frame, track, (box[0], box[1], box[2], box[3]), det, quality, model


@functools.lru_cache(maxsize=1024)
def _valid_text(key: str, value: str) -> bool:
    """True when ``value`` passes ``key``'s reader (``node``: a valid node id; else non-empty printable text)."""
    try:
        (read.node if key == "node" else read.text)({key: value}, key)
    except SchemaError:
        return False
    return True


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
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    def to_dict(self) -> dict[str, object]:
        """The JSON object of :meth:`to_json` (a shallow copy of the fields, in their order: ``asdict`` cost
        8x a copy field by field per result, and that 3x ``__dict__``'s)."""
        data = dict(self.__dict__)
        data["bbox"] = [round(float(x), 1) for x in self.bbox]
        data["score"] = round(self.score, 5)
        data["candidates"] = [{"name": c.name, "score": round(c.score, 5)} for c in self.candidates]
        return data

    @classmethod
    def from_json(cls, payload: bytes) -> FaceResult:
        """Decode and validate a FaceResult; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_JSON_BYTES)
        read.check_version(data)
        candidates = tuple(
            Candidate(read.text(c, "name"), read.number(c, "score"))
            for c in read.object_list(data, "candidates", MAX_CANDIDATES)
        )
        return cls(
            node=read.node(data),
            seq=read.integer(data, "seq"),
            track=read.integer(data, "track"),
            frame=read.integer(data, "frame"),
            ts=read.number(data, "ts"),
            name=read.text(data, "name"),
            score=read.number(data, "score"),
            known=read.flag(data, "known"),
            threshold=read.number(data, "threshold"),
            model=read.text(data, "model"),
            gallery_version=read.text(data, "gallery_version"),
            classified_at=read.number(data, "classified_at"),
            latency_ms=read.number(data, "latency_ms"),
            bbox=read.bbox(data),
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
        data = read.json_object(payload, MAX_JSON_BYTES)
        read.check_version(data)
        raw = read.object_list(data, "evidence", MAX_EVIDENCE)
        evidence = tuple(
            Evidence(
                node=read.node(e),
                seq=read.integer(e, "seq"),
                track=read.integer(e, "track"),
                name=read.text(e, "name"),
                score=read.number(e, "score"),
                ts=read.number(e, "ts"),
            )
            for e in raw
        )
        return cls(
            id=read.text(data, "id"),
            rule=read.text(data, "rule"),
            node=read.node(data),
            subject=read.text(data, "subject"),
            message=read.text(data, "message"),
            ts=read.number(data, "ts"),
            raised_at=read.number(data, "raised_at"),
            evidence=evidence,
        )


def _check_vector(emb: np.ndarray) -> None:
    squared = float(np.dot(emb, emb))  # NaN or inf exactly when an element is (float16 squares cannot overflow)
    if not math.isfinite(squared):
        raise SchemaError("not-finite", "emb contains NaN or inf")
    norm = math.sqrt(squared)  # what np.linalg.norm computes for a float32 vector
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise SchemaError("not-normalised", f"|emb| = {norm:.4f}")


@dataclass(frozen=True)
class DeadLetter:
    """A message a service could not use: why, where it came from and (on the wire) its size and first bytes.

    Built by a service from the refused message; decoded, ``payload`` is the
    excerpt and ``service``, ``size`` and ``ts`` are what the sender wrote.
    """

    reason: str
    detail: str
    topic: str
    payload: bytes = field(repr=False)
    service: str = ""
    size: int | None = None
    ts: float | None = None
    v: int = SCHEMA_VERSION

    def to_json(self, service: str) -> bytes:
        """The letter ``service`` publishes on ``<prefix>/deadletter/<service>``."""
        return read.dump_json(
            {
                "v": self.v,
                "service": service,
                "reason": self.reason,
                "detail": read.escaped(self.detail)[:1024],  # both may quote the hostile message
                "topic": read.escaped(self.topic)[:1024],
                "size": len(self.payload) if self.size is None else self.size,
                "excerpt_b64": base64.b64encode(self.payload[:EXCERPT_BYTES]).decode(),
                "ts": time.time() if self.ts is None else self.ts,
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> DeadLetter:
        """Decode and validate a dead letter; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_JSON_BYTES)
        read.check_version(data)
        read.check_fields(data, {"v", "service", "reason", "detail", "topic", "size", "excerpt_b64", "ts"})
        return cls(
            reason=read.text(data, "reason", 64),
            detail=read.optional_text(data, "detail", 1024),
            topic=read.optional_text(data, "topic", 1024),
            payload=read.base64_bytes(data, "excerpt_b64", EXCERPT_BYTES),
            service=read.text(data, "service", 64),
            size=read.integer(data, "size"),
            ts=read.number(data, "ts"),
        )
