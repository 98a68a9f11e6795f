"""Gallery commands on ``<prefix>/gallery/cmd``: strict JSON parsing into typed commands.

Every malformed command raises :class:`SchemaError` (it is dead-lettered, never applied).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from classifier_service.gallery.enrolment import valid_person
from facewire.errors import SchemaError
from facewire.topics import valid_node_id

MAX_COMMAND_BYTES = 1024 * 1024  # the broker config allows 256 KB packets; a bigger one is refused here too
MAX_IMAGES = 64
MAX_EMBEDDINGS = 4096
MAX_DIM = 4096
NORM_TOLERANCE = 0.02
MAX_COMPONENT = 2.0
OPS = {
    "enroll",
    "forget",
    "whereis",
    "sync",
    "reload",
    "reject",
    "relabel",
    "negative",
    "unknowns",
    "name-cluster",
    "rename",
    "status",
}
FIELDS = {
    "enroll": {"person", "images", "embeddings", "model", "sources"},
    "forget": {"person"},
    "whereis": {"person"},
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
COMMON = {"op", "id", "actor", "v"}


@dataclass(frozen=True)
class Command:
    """One validated gallery command; which fields are set depends on ``op``."""

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


def parse_command(payload: bytes) -> Command:
    """Decode and validate a gallery command; raise SchemaError(reason) otherwise."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise SchemaError("oversize", f"{len(payload)} bytes > {MAX_COMMAND_BYTES}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("not-json", str(exc)[:120]) from exc
    except RecursionError as exc:
        raise SchemaError("too-deep", "JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise SchemaError("wrong-type", "command is not an object")
    op = data.get("op")
    if op not in OPS:
        raise SchemaError("unknown-op", repr(op)[:40])
    unknown = set(data) - COMMON - FIELDS[op]
    if unknown:
        raise SchemaError("unknown-field", ", ".join(sorted(unknown))[:120])
    command = Command(op=op, id=_short_text(data, "id", "-"), actor=_short_text(data, "actor", "mqtt"))
    return _PARSERS.get(op, lambda d, c: c)(data, command)


def _short_text(data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not 0 < len(value) <= 128 or not value.isprintable():
        raise SchemaError("wrong-type", f"{key} must be a short printable string")
    return value


def _with_person(data: dict[str, Any], command: Command) -> Command:
    return _replace(command, person=valid_person(data.get("person")))


def _enroll(data: dict[str, Any], command: Command) -> Command:
    command = _with_person(data, command)
    has_images, has_embeddings = "images" in data, "embeddings" in data
    if has_images == has_embeddings:
        raise SchemaError("missing-field", "enroll needs exactly one of images or embeddings")
    if has_images:
        return _replace(command, images=_images(data["images"]))
    embeddings = embeddings_of(data["embeddings"])
    return _replace(
        command, embeddings=embeddings, model=_short_text(data, "model", ""), sources=_sources(data, len(embeddings))
    )


def _negative(data: dict[str, Any], command: Command) -> Command:
    command = _with_person(data, command)
    return _replace(
        command,
        embeddings=embeddings_of(data.get("embeddings")),
        model=_short_text(data, "model", ""),
        result=_result(data.get("result")) if "result" in data else None,
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


def _sync(data: dict[str, Any], command: Command) -> Command:
    return _replace(command, requester=_short_text(data, "requester", "-"))


def _images(raw: object) -> tuple[bytes, ...]:
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_IMAGES or not all(isinstance(i, str) for i in raw):
        raise SchemaError("wrong-type", f"images must be a list of 1..{MAX_IMAGES} base64 strings")
    try:
        return tuple(base64.b64decode(item, validate=True) for item in raw)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError("bad-base64", str(exc)[:80]) from exc


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
        try:
            raw = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SchemaError("bad-base64", str(exc)[:80]) from exc
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


def _result(raw: object) -> tuple[str, int]:
    if not isinstance(raw, str) or raw.count("/") != 1:
        raise SchemaError("bad-result", "result must be 'NODE/SEQ'")
    node, seq = raw.split("/")
    if not valid_node_id(node) or not (seq.isascii() and seq.isdigit()) or len(seq) > 19:
        raise SchemaError("bad-result", repr(raw)[:80])
    return node, int(seq)


def _reject(data: dict[str, Any], command: Command) -> Command:
    return _replace(command, result=_result(data.get("result")))


def _relabel(data: dict[str, Any], command: Command) -> Command:
    return _replace(_with_person(data, command), result=_result(data.get("result")))


def _name_cluster(data: dict[str, Any], command: Command) -> Command:
    return _replace(_with_person(data, command), cluster=_short_text(data, "cluster", ""))


def _rename(data: dict[str, Any], command: Command) -> Command:
    """``person`` gets the new name ``to`` (both valid person names, and different)."""
    command = _replace(_with_person(data, command), to=valid_person(data.get("to")))
    if command.to == command.person:
        raise SchemaError("same-name", "to is the person's current name")
    return command


def _replace(command: Command, **changes: Any) -> Command:
    return replace(command, **changes)


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
