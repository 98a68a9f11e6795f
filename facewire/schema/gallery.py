"""Gallery commands (``<prefix>/gallery/cmd``) and gallery events (``<prefix>/gallery/events``).

Every replica applies every command; each answers with events carrying the
command's ``id``. A malformed command raises :class:`SchemaError` (it is
dead-lettered, never applied).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from facewire.errors import SchemaError
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_COMMAND_BYTES = 1024 * 1024  # the broker config allows 256 KB packets; a bigger one is refused here too
MAX_EVENT_BYTES = 1024 * 1024
MAX_IMAGES = 64
MAX_EMBEDDINGS = 4096
MAX_DIM = 4096
MAX_DEPTH = 6
NORM_TOLERANCE = 0.02
MAX_COMPONENT = 2.0
PERSON_PATTERN = re.compile(r"[^\W_][\w .'-]{0,63}")
RESERVED_NAMES = {"unknown"}
FIELDS = {
    "enroll": {"person", "images", "embeddings", "model", "sources"},
    "forget": {"person"},
    "whereis": {"person"},
    "people": set(),
    "reload": set(),
    "reject": {"result"},
    "relabel": {"result", "person"},
    "negative": {"person", "embeddings", "model", "result", "sources"},
    "sync": {"requester"},
    "unknowns": set(),
    "name-cluster": {"cluster", "person"},
    "rename": {"person", "to"},
    "status": set(),
}
OPS = frozenset(FIELDS)
COMMON = {"op", "id", "actor", "v"}
EVENT_COMMON = ("v", "event", "id", "instance", "op", "gallery_version", "people", "embeddings", "ts")


def valid_person(name: object) -> str:
    """``name`` if it is a usable person name (one folder level, no path tricks); SchemaError otherwise."""
    if not isinstance(name, str) or not PERSON_PATTERN.fullmatch(name) or name.endswith((" ", ".")):
        raise SchemaError("bad-person", repr(name)[:80])
    if name.lower() in RESERVED_NAMES:
        raise SchemaError("bad-person", f"{name!r} is reserved")
    return name


@dataclass(frozen=True)
class GalleryCommand:
    """One validated gallery command; which fields are set depends on ``op``."""

    VERSION_REQUIRED: ClassVar[bool] = False  # people and third-party clients write these: absent is v1

    op: str
    id: str
    actor: str
    person: str = ""
    images: tuple[bytes, ...] = ()
    embeddings: np.ndarray | None = field(default=None, repr=False)
    model: str = ""
    result: tuple[str, int] | None = None
    cluster: str = ""
    sources: tuple[str, ...] = ()
    requester: str = ""
    to: str = ""
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        """The wire form: only the fields ``op`` takes that are set (embeddings as base64 float16)."""
        body: dict[str, Any] = {"v": self.v, "op": self.op, "id": self.id, "actor": self.actor}
        wanted = FIELDS.get(self.op, set())
        values: dict[str, Any] = {
            "person": self.person,
            "images": [base64.b64encode(image).decode() for image in self.images],
            "embeddings": None if self.embeddings is None else b64_vectors(self.embeddings),
            "model": self.model,
            "result": None if self.result is None else f"{self.result[0]}/{self.result[1]}",
            "cluster": self.cluster,
            "sources": list(self.sources),
            "requester": self.requester,
            "to": self.to,
        }
        body |= {k: v for k, v in values.items() if k in wanted and v not in (None, "", [])}
        return read.dump_json(body)

    @classmethod
    def from_json(cls, payload: bytes) -> GalleryCommand:
        """Decode and validate a gallery command; raise SchemaError(reason) otherwise."""
        data = read.json_object(payload, MAX_COMMAND_BYTES)
        read.check_version(data, required=cls.VERSION_REQUIRED)
        op = data.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise SchemaError("unknown-op", repr(op)[:40])
        read.check_fields(data, COMMON | FIELDS[op])
        command = cls(op=op, id=_short_text(data, "id", "-"), actor=_short_text(data, "actor", "mqtt"))
        return _PARSERS.get(op, lambda d, c: c)(data, command)


def b64_vectors(vectors: np.ndarray) -> list[str]:
    """Embeddings as base64 little-endian float16 (the gallery command format)."""
    return [base64.b64encode(np.asarray(v, dtype="<f2").tobytes()).decode() for v in vectors]


def _short_text(data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable():
        raise SchemaError("wrong-type", f"{key} must be a short printable string")
    return value


def _with_person(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    return replace(command, person=valid_person(data.get("person")))


def _enroll(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    command = _with_person(data, command)
    has_images, has_embeddings = "images" in data, "embeddings" in data
    if has_images == has_embeddings:
        raise SchemaError("missing-field", "enroll needs exactly one of images or embeddings")
    if has_images:
        return replace(command, images=_images(data["images"]))
    embeddings = embeddings_of(data["embeddings"])
    return replace(
        command, embeddings=embeddings, model=_short_text(data, "model", ""), sources=_sources(data, len(embeddings))
    )


def _negative(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    command = _with_person(data, command)
    return replace(
        command,
        embeddings=embeddings_of(data.get("embeddings")),
        model=_short_text(data, "model", ""),
        result=read.result_key(data.get("result")) if "result" in data else None,
        sources=_sources(data, 0),
    )


def _sources(data: dict[str, Any], count: int) -> tuple[str, ...]:
    """Optional source ids of embeddings (a replica sharing its rows keeps their ids, so versions match)."""
    raw = data.get("sources")
    if raw is None:
        return ()
    embeddings = data.get("embeddings")
    count = count or (len(embeddings) if isinstance(embeddings, list) else -1)
    if not isinstance(raw, list) or len(raw) != count:
        raise SchemaError("wrong-type", "sources must be a list with one string per embedding")
    if not all(isinstance(s, str) and 0 < len(s) <= 128 and s.isprintable() for s in raw):
        raise SchemaError("wrong-type", "sources must be short printable strings")
    return tuple(raw)


def _sync(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    return replace(command, requester=_short_text(data, "requester", "-"))


def _images(raw: object) -> tuple[bytes, ...]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_IMAGES:
        raise SchemaError("wrong-type", f"images must be a list of 1..{MAX_IMAGES} base64 strings")
    return tuple(read.base64_bytes({"images": item}, "images", MAX_COMMAND_BYTES) for item in raw)


def embeddings_of(raw: object) -> np.ndarray:
    """(N, dim) float32 from a list of base64 little-endian float16 strings or lists of numbers."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_EMBEDDINGS:
        raise SchemaError("wrong-type", f"embeddings must be a list of 1..{MAX_EMBEDDINGS}")
    vectors = [_vector(item) for item in raw]
    if len({len(v) for v in vectors}) != 1:
        raise SchemaError("emb-length", "embeddings differ in dimension")
    return np.stack(vectors)


def _vector(item: object) -> np.ndarray:
    if isinstance(item, str):
        raw = read.base64_bytes({"embeddings": item}, "embeddings", 2 * MAX_DIM)
        if not 0 < len(raw) <= 2 * MAX_DIM or len(raw) % 2:
            raise SchemaError("emb-length", f"{len(raw)} bytes is not a float16 vector")
        vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif isinstance(item, list) and 0 < len(item) <= MAX_DIM:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in item):
            raise SchemaError("wrong-type", "embedding lists hold numbers only")
        if not all(abs(x) <= MAX_COMPONENT for x in item):  # also false for NaN; no float32 overflow
            raise SchemaError("not-normalised", f"components of a unit vector lie within ±{MAX_COMPONENT}")
        vector = np.asarray(item, dtype=np.float32)
    else:
        raise SchemaError("wrong-type", "an embedding is a base64 string or a list of numbers")
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or abs(norm - 1.0) > NORM_TOLERANCE:
        raise SchemaError("not-normalised", f"|emb| = {norm:.4f}")
    return vector / norm


def _reject(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    return replace(command, result=read.result_key(data.get("result")))


def _relabel(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    return replace(_with_person(data, command), result=read.result_key(data.get("result")))


def _name_cluster(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    return replace(_with_person(data, command), cluster=_short_text(data, "cluster", ""))


def _rename(data: dict[str, Any], command: GalleryCommand) -> GalleryCommand:
    """``person`` gets the new name ``to`` (both valid person names, and different)."""
    command = replace(_with_person(data, command), to=valid_person(data.get("to")))
    if command.to == command.person:
        raise SchemaError("same-name", "to is the person's current name")
    return command


_PARSERS = {
    "enroll": _enroll,
    "forget": _with_person,
    "whereis": _with_person,
    "reject": _reject,
    "relabel": _relabel,
    "negative": _negative,
    "name-cluster": _name_cluster,
    "rename": _rename,
    "sync": _sync,
}


@dataclass(frozen=True)
class GalleryEvent:
    """What one replica did about command ``id``: ``event`` (``enrolled``, ``forgotten``, ``error``...).

    The replica's gallery after the command is in the common fields; what the
    event reports (``person``, ``removed``, ``reason``, ``clusters``...) is in
    ``details``, flat beside them on the wire (JSON values nested at most
    ``MAX_DEPTH`` deep).
    """

    event: str
    id: str
    instance: str
    op: str = ""
    gallery_version: str = ""
    people: int | None = None
    embeddings: int | None = None
    ts: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    def get(self, key: str, default: Any = None) -> Any:
        """A field or a detail of the event by its name on the wire (``event``, ``person``, ``removed``...)."""
        if key in EVENT_COMMON:
            value = getattr(self, key)
            return default if value is None or value == "" else value
        return self.details.get(key, default)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"v": self.v, "event": self.event, "id": self.id, "instance": self.instance}
        common: dict[str, Any] = {"op": self.op, "gallery_version": self.gallery_version, "people": self.people}
        common |= {"embeddings": self.embeddings, "ts": self.ts}
        body |= {k: v for k, v in common.items() if v not in (None, "")}
        clash = set(EVENT_COMMON) & self.details.keys()
        if clash:
            raise ValueError(f"event details may not be named {sorted(clash)}")
        return read.dump_json(body | self.details)

    @classmethod
    def from_json(cls, payload: bytes) -> GalleryEvent:
        """Decode and validate a gallery event; raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_EVENT_BYTES)
        read.check_version(data)
        details = {k: v for k, v in data.items() if k not in EVENT_COMMON}
        _check_details(details, MAX_DEPTH)
        return cls(
            event=read.text(data, "event", 64),
            id=read.text(data, "id", 128),
            instance=read.text(data, "instance"),
            op=read.optional_text(data, "op", 64),
            gallery_version=read.optional_text(data, "gallery_version"),
            people=read.optional_integer(data, "people"),
            embeddings=read.optional_integer(data, "embeddings"),
            ts=read.optional_number(data, "ts"),
            details=details,
        )


def _check_details(value: object, depth: int) -> None:
    """Refuse details nested deeper than ``depth``, holding NaN or infinity, or text a terminal would obey."""
    if isinstance(value, dict | list):
        if depth == 0:
            raise SchemaError("too-deep", f"details nest deeper than {MAX_DEPTH}")
        for key in value if isinstance(value, dict) else ():
            read.printable(key, "details")
        for item in value.values() if isinstance(value, dict) else value:
            _check_details(item, depth - 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise SchemaError("not-finite", "a detail is NaN or infinite")
    elif isinstance(value, str):
        read.printable(value, "details")
