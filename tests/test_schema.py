"""FaceEmbedding / FaceResult encoding, and every rejection reason of the decoders."""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.errors import SchemaError
from facewire.schema import SCHEMA_VERSION, Candidate, FaceEmbedding, FaceResult


def unit(dim: int = 128, seed: int = 0) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def embedding(**changes: object) -> FaceEmbedding:
    values: dict[str, object] = dict(
        node="cam-1",
        seq=7,
        ts=1_700_000_000.25,
        frame=3,
        track=2,
        bbox=(10.0, 20.0, 50.0, 60.0),
        det=0.93,
        quality={"size": 50.0, "sharpness": 120.5},
        model="sface-2021dec",
        emb=unit(),
    )
    values.update(changes)
    return FaceEmbedding(**values)  # type: ignore[arg-type]


def packed(**changes: object) -> bytes:
    data = msgpack.unpackb(embedding().to_msgpack())
    data.update(changes)
    return msgpack.packb(data, use_bin_type=True)


def test_embedding_round_trip_keeps_every_field() -> None:
    original = embedding()
    decoded = FaceEmbedding.from_msgpack(original.to_msgpack())
    assert decoded.key == ("cam-1", 7)
    assert (decoded.ts, decoded.frame, decoded.track, decoded.bbox) == (original.ts, 3, 2, original.bbox)
    assert decoded.quality == original.quality and decoded.model == "sface-2021dec" and decoded.dim == 128
    assert float(np.dot(decoded.emb, original.emb)) > 0.9999


def test_embedding_message_is_small() -> None:
    assert len(embedding().to_msgpack()) < 512  # 128 float16 values are 256 of these bytes


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1", "not-msgpack"),
        (msgpack.packb([1, 2, 3]), "wrong-type"),
        (packed(v=99), "unknown-version"),
        (packed(v="1"), "wrong-type"),
        (packed(seq="7"), "wrong-type"),
        (packed(seq=-1), "out-of-range"),
        (packed(ts=float("nan")), "not-finite"),
        (packed(emb=b"\x00" * 10), "emb-length"),
        (packed(emb="text"), "wrong-type"),
        (packed(dim=0), "out-of-range"),
        (packed(node="a/b"), "bad-node"),
        (packed(node="+"), "bad-node"),
        (packed(bbox=[1, 2, 3]), "wrong-type"),
        (packed(emb=(unit() * 3).astype("<f2").tobytes()), "not-normalised"),
        (packed(emb=np.full(128, np.inf, dtype="<f2").tobytes()), "not-finite"),
        (b"\x00" * 70_000, "oversize"),
    ],
)
def test_embedding_rejections_name_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(SchemaError) as caught:
        FaceEmbedding.from_msgpack(payload)
    assert caught.value.reason == reason


def test_missing_field_is_named() -> None:
    data = msgpack.unpackb(embedding().to_msgpack())
    del data["track"]
    with pytest.raises(SchemaError, match="missing-field: track"):
        FaceEmbedding.from_msgpack(msgpack.packb(data, use_bin_type=True))


def result(**changes: object) -> FaceResult:
    values: dict[str, object] = dict(
        node="cam-1",
        seq=7,
        track=2,
        frame=3,
        ts=1.5,
        name="Ada",
        score=0.71,
        known=True,
        threshold=0.45,
        model="sface-2021dec",
        gallery_version="abc",
        classified_at=2.0,
        latency_ms=1.5,
        bbox=(1.0, 2.0, 3.0, 4.0),
        candidates=(Candidate("Ada", 0.71), Candidate("Bob", 0.2)),
    )
    values.update(changes)
    return FaceResult(**values)  # type: ignore[arg-type]


def test_result_json_round_trip() -> None:
    original = result()
    assert FaceResult.from_json(original.to_json()) == original
    assert b'"name":"Ada"' in original.to_json() and f'"v":{SCHEMA_VERSION}'.encode() in original.to_json()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "not-json"),
        (b"[]", "wrong-type"),
        (b'{"v": 2}', "unknown-version"),
        (result().to_json().replace(b'"known":true', b'"known":"yes"'), "wrong-type"),
        (result().to_json().replace(b'"name":"Ada"', b'"name":""'), "wrong-type"),
    ],
)
def test_result_rejections_name_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(SchemaError) as caught:
        FaceResult.from_json(payload)
    assert caught.value.reason == reason


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_embedding_decoder_never_fails_other_than_schema_error(payload: bytes) -> None:
    with contextlib.suppress(SchemaError):
        FaceEmbedding.from_msgpack(payload)


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(FaceEmbedding.__dataclass_fields__), "v", "dim"]),
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**64 - 1),
            st.floats(),
            st.text(max_size=5),
            st.binary(max_size=300),
            st.lists(st.floats(), max_size=5),
        ),
    )
)
def test_embedding_decoder_rejects_arbitrary_maps_cleanly(data: dict[str, object]) -> None:
    with contextlib.suppress(SchemaError):
        FaceEmbedding.from_msgpack(msgpack.packb(data, use_bin_type=True))
