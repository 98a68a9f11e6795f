"""``facewire tail``: decode the msgpack embedding stream for debugging, one line per message.

Shows who sent what (node, seq, model, dim, size, quality, bbox); the vector
itself only when asked for.
"""

from __future__ import annotations

import json
import time
from typing import Any

from facewire.errors import SchemaError
from facewire.schema import FaceEmbedding


def describe_embedding(topic: str, payload: bytes, vector: bool = False) -> dict[str, Any]:
    """What a person debugging the stream wants to know about one embedding message."""
    try:
        emb = FaceEmbedding.from_msgpack(payload)
    except SchemaError as exc:
        return {"topic": topic, "bytes": len(payload), "error": exc.reason, "detail": exc.detail}
    info: dict[str, Any] = {
        "topic": topic,
        "node": emb.node,
        "seq": emb.seq,
        "ts": emb.ts,
        "frame": emb.frame,
        "track": emb.track,
        "model": emb.model,
        "dim": emb.dim,
        "bytes": len(payload),
        "det": round(emb.det, 3),
        "quality": {k: round(v, 2) for k, v in emb.quality.items()},
        "bbox": [round(x, 1) for x in emb.bbox],
    }
    if vector:
        info["vector"] = [round(float(x), 4) for x in emb.emb]
    return info


def format_line(info: dict[str, Any]) -> str:
    """One human-readable line for :func:`describe_embedding`'s output."""
    if "error" in info:
        return f"{info['topic']}  INVALID {info['error']}: {info['detail']} ({info['bytes']} bytes)"
    clock = time.strftime("%H:%M:%S", time.localtime(info["ts"]))
    quality = " ".join(f"{k}={v}" for k, v in info["quality"].items())
    box = ",".join(f"{x:g}" for x in info["bbox"])
    line = (
        f"{clock} {info['node']} seq={info['seq']} track={info['track']} model={info['model']} "
        f"dim={info['dim']} bytes={info['bytes']} det={info['det']} bbox=[{box}] {quality}"
    )
    if "vector" in info:
        line += "\n  vector=" + json.dumps(info["vector"])
    return line
