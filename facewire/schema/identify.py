"""Search by photo: requests on ``<prefix>/identify/req``, answers on the request's response topic.

The answer goes to the MQTT 5 ResponseTopic with the request's CorrelationData;
MQTT 3.1.1 clients put ``reply_to`` and ``correlation`` in the request instead.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, ClassVar

from facewire.errors import SchemaError
from facewire.schema import Candidate
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_IMAGES = 8
MAX_IMAGE_BYTES = 4 * 1024 * 1024
MAX_FACES = 256
MAX_TOP_K = 20


@dataclass(frozen=True)
class IdentifyRequest:
    """Photos to identify (JPEG or PNG bytes) and how many candidates to list per face."""

    VERSION_REQUIRED: ClassVar[bool] = False  # people and third-party clients write these: absent is v1

    images: tuple[bytes, ...] = field(repr=False)
    top_k: int = 3
    reply_to: str = ""
    correlation: str = ""
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"v": self.v, "images": [base64.b64encode(i).decode() for i in self.images]}
        body["top_k"] = self.top_k
        if self.reply_to:
            body |= {"reply_to": self.reply_to, "correlation": self.correlation}
        return read.dump_json(body)

    @classmethod
    def from_json(cls, payload: bytes) -> IdentifyRequest:
        """Decode and validate a request; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_REQUEST_BYTES)
        read.check_version(data, required=cls.VERSION_REQUIRED)
        read.check_fields(data, {"v", "images", "top_k", "reply_to", "correlation"})
        images = data.get("images")
        if not isinstance(images, list) or not images:
            raise SchemaError("wrong-type", "images must be a non-empty list of base64 strings")
        if len(images) > MAX_IMAGES:
            raise SchemaError("out-of-range", f"at most {MAX_IMAGES} images per request")
        top_k = read.integer({"top_k": 3} | data, "top_k", 1, MAX_TOP_K)
        return cls(
            images=tuple(read.base64_bytes({"images": item}, "images", MAX_IMAGE_BYTES) for item in images),
            top_k=top_k,
            reply_to=read.optional_text(data, "reply_to"),
            correlation=read.optional_text(data, "correlation"),
        )


@dataclass(frozen=True)
class IdentifiedFace:
    """One face of a photo: where it is and who it is (or ``unknown``), with the top-k candidates."""

    bbox: tuple[float, float, float, float]
    det: float
    name: str
    score: float
    known: bool
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bbox": [round(v, 1) for v in self.bbox],
            "det": self.det,
            "name": self.name,
            "score": round(self.score, 4),
            "known": self.known,
            "candidates": [{"name": c.name, "score": round(c.score, 4)} for c in self.candidates],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdentifiedFace:
        read.check_fields(data, {"bbox", "det", "name", "score", "known", "candidates"})
        return cls(
            bbox=read.bbox(data),
            det=read.number(data, "det"),
            name=read.text(data, "name"),
            score=read.number(data, "score"),
            known=read.flag(data, "known"),
            candidates=tuple(
                Candidate(read.text(c, "name"), read.number(c, "score"))
                for c in read.object_list(data, "candidates", MAX_TOP_K)
            ),
        )


@dataclass(frozen=True)
class IdentifyResponse:
    """The answer: per request image, its faces; or ``ok`` false with the ``error``."""

    ok: bool
    results: tuple[tuple[IdentifiedFace, ...], ...] = ()
    threshold: float | None = None
    error: str = ""
    correlation: str = ""
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"v": self.v, "ok": self.ok}
        if self.ok:
            body["results"] = [{"faces": [face.to_dict() for face in faces]} for faces in self.results]
            body["threshold"] = self.threshold
        else:
            body["error"] = self.error
        if self.correlation:
            body["correlation"] = self.correlation
        return read.dump_json(body)

    @classmethod
    def from_json(cls, payload: bytes) -> IdentifyResponse:
        """Decode and validate a response; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_RESPONSE_BYTES)
        read.check_version(data)
        read.check_fields(data, {"v", "ok", "results", "threshold", "error", "correlation"})
        results = tuple(
            tuple(IdentifiedFace.from_dict(face) for face in read.object_list(image, "faces", MAX_FACES))
            for image in read.object_list(data, "results", MAX_IMAGES)
        )
        return cls(
            ok=read.flag(data, "ok"),
            results=results,
            threshold=read.optional_number(data, "threshold"),
            error=read.optional_text(data, "error", 1024),
            correlation=read.optional_text(data, "correlation"),
        )
