"""FaceEmbedding.from_msgpack's quick path for fields of the usual kinds (issue 21) gives the same embedding and,
for anything else, the same rejection as the field-by-field readers."""

from __future__ import annotations

import msgpack
import pytest

from facewire.errors import SchemaError
from facewire.schema import FaceEmbedding
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
