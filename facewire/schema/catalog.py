"""Every message class on the wire by the name ``facewire.topics.CHANNELS`` uses, with its content type and codec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from facewire.schema import Alert, DeadLetter, FaceEmbedding, FaceResult
from facewire.schema.gallery import GalleryCommand, GalleryEvent
from facewire.schema.homeassistant import SensorAttributes, SensorState
from facewire.schema.identify import IdentifyRequest, IdentifyResponse
from facewire.schema.replay import ReplayRequest
from facewire.schema.stats import ThresholdReport
from facewire.schema.status import NodesSummary, NodeStatus, ServiceStatus
from facewire.schema.thumbnail import Thumbnail


@dataclass(frozen=True)
class Codec:
    """How one message class goes on the wire and comes back (decode raises SchemaError with a reason)."""

    kind: type
    content_type: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _json(kind: Any) -> Codec:
    return Codec(kind, "application/json", kind.to_json, kind.from_json)


MESSAGES: dict[str, Codec] = {
    codec.kind.__name__: codec
    for codec in (
        Codec(FaceEmbedding, "application/msgpack", FaceEmbedding.to_msgpack, FaceEmbedding.from_msgpack),
        _json(FaceResult),
        _json(ReplayRequest),
        _json(Thumbnail),
        _json(Alert),
        Codec(DeadLetter, "application/json", lambda letter: letter.to_json(letter.service), DeadLetter.from_json),
        _json(NodeStatus),
        _json(ServiceStatus),
        _json(ThresholdReport),
        _json(NodesSummary),
        _json(GalleryCommand),
        _json(GalleryEvent),
        _json(IdentifyRequest),
        _json(IdentifyResponse),
        Codec(SensorState, "text/plain", SensorState.to_text, SensorState.from_text),
        _json(SensorAttributes),
    )
}
