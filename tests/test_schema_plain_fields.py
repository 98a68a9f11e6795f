"""FaceEmbedding.from_msgpack's quick path for fields of the usual kinds (issue 21) gives the same embedding and,
for anything else, the same rejection as the field-by-field readers."""

from __future__ import annotations

from dataclasses import fields, replace

import msgpack
import pytest

from facewire.errors import SchemaError
from facewire.schema import Candidate, FaceEmbedding, FaceResult
from tests.test_schema import embedding


def packed(**changes: object) -> bytes:
    data = msgpack.unpackb(embedding().to_msgpack())
    data.update(changes)
    return msgpack.packb(data, use_bin_type=True)


def test_fields_of_other_valid_kinds_decode_as_the_usual_ones() -> None:
    usual = FaceEmbedding.from_msgpack(packed(ts=5.0, det=1.0, bbox=[1.0, 2.0, 3.0, 4.0], quality={"blur": 2.0}))
    other = FaceEmbedding.from_msgpack(packed(ts=5, det=1, bbox=[1, 2, 3, 4], quality={"blur": 2}))
    assert (other.ts, other.det, other.bbox, other.quality) == (usual.ts, usual.det, usual.bbox, usual.quality)
    assert all(type(x) is float for x in (other.ts, other.det, *other.bbox, *other.quality.values()))
    huge = FaceEmbedding.from_msgpack(packed(bbox=[1e308, 1e308, 0.0, 0.0]))  # finite, though their sum is not
    assert huge.bbox == (1e308, 1e308, 0.0, 0.0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"seq": True}, "wrong-type"),
        ({"frame": -1}, "out-of-range"),
        ({"track": 2**63}, "out-of-range"),
        ({"ts": float("inf")}, "not-finite"),
        ({"det": "0.9"}, "wrong-type"),
        ({"bbox": [1.0, 2.0, float("nan"), 4.0]}, "not-finite"),
        ({"bbox": [1.0, 2.0, 3.0]}, "wrong-type"),
        ({"quality": {"blur": float("nan")}}, "not-finite"),
        ({"quality": {str(i): 1.0 for i in range(33)}}, "wrong-type"),
        ({"node": "cam/1"}, "bad-node"),
        ({"node": ""}, "wrong-type"),
        ({"model": "sface\x1b[2J"}, "control-char"),
        ({"model": 7}, "wrong-type"),
    ],
)
def test_unusual_fields_are_refused_for_their_reason(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(SchemaError) as refused:
        FaceEmbedding.from_msgpack(packed(**changes))
    assert refused.value.reason == reason
    FaceEmbedding.from_msgpack(packed())  # and the usual message still decodes after it (names are cached)


def test_result_dict_has_every_field_in_order_and_nothing_else() -> None:
    result = FaceResult(
        node="cam-1", seq=7, track=2, frame=3, ts=1.5, name="alice", score=0.612345678, known=True, threshold=0.5,
        model="sface-2021dec", gallery_version="g1", classified_at=2.5, latency_ms=1.25, bbox=(1.04, 2.0, 3.0, 4.0),
        candidates=(Candidate("alice", 0.612345678), Candidate("bob", 0.3)),
    )  # fmt: skip
    assert result.key == ("cam-1", 7)  # a property read before: must not become a field of the JSON
    data = result.to_dict()
    assert list(data) == [f.name for f in fields(FaceResult)]
    assert data["score"] == 0.61235 and data["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert data["candidates"] == [{"name": "alice", "score": 0.61235}, {"name": "bob", "score": 0.3}]
    rounded = (Candidate("alice", 0.61235), Candidate("bob", 0.3))
    expected = replace(result, score=0.61235, bbox=(1.0, 2.0, 3.0, 4.0), candidates=rounded)
    assert FaceResult.from_json(result.to_json()) == expected
