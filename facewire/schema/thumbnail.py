"""Thumbnail of a face the classifier found unknown, sent by an opted-in edge on ``<prefix>/thumbnails/<node>``."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from facewire.errors import SchemaError
from facewire.schema import fields as read
from facewire.schema.fields import SCHEMA_VERSION

MAX_JPEG_BYTES = 16 * 1024
MAX_THUMBNAIL_BYTES = 32 * 1024
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class Thumbnail:
    """A small JPEG of face ``seq`` (track ``track``, seen at ``ts``) on ``node``."""

    node: str
    seq: int
    track: int
    ts: float
    jpeg: bytes = field(repr=False)
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return read.dump_json(
            {
                "v": self.v,
                "node": self.node,
                "seq": self.seq,
                "track": self.track,
                "ts": self.ts,
                "jpeg": base64.b64encode(self.jpeg).decode(),
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> Thumbnail:
        """Decode and validate a thumbnail (a small JPEG); raise SchemaError with the reason otherwise."""
        data = read.json_object(payload, MAX_THUMBNAIL_BYTES)
        read.check_version(data)
        read.check_fields(data, {"v", "node", "seq", "track", "ts", "jpeg"})
        jpeg = read.base64_bytes(data, "jpeg", MAX_JPEG_BYTES)
        if len(jpeg) > MAX_JPEG_BYTES:
            raise SchemaError("oversize", f"jpeg is {len(jpeg)} bytes > {MAX_JPEG_BYTES}")
        if not jpeg.startswith(JPEG_MAGIC):
            raise SchemaError("not-jpeg", "jpeg does not start with a JPEG marker")
        return cls(
            node=read.node(data),
            seq=read.integer(data, "seq"),
            track=read.integer(data, "track"),
            ts=read.number(data, "ts"),
            jpeg=jpeg,
        )
