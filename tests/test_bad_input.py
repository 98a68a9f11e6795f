"""Bad input: fuzzed decoders raise only SchemaError; a malformed flood never stops the live classifier."""

from __future__ import annotations

import contextlib
import json
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.config import MqttSettings
from facewire.errors import ImageError, SchemaError
from facewire.images import decode_image
from facewire.mqtt import MqttConnection
from facewire.schema import Alert, FaceResult
from facewire.schema.gallery import COMMON, FIELDS, OPS, GalleryCommand
from facewire_console.broker import LocalBroker
from harness.processes import Collector, RunningClassifier
from tests.reliability_support import ResultCounter
from tests.test_schema import embedding, unit
from tests.test_spine_integration import split_sample

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def json_maps(keys: list[str]) -> st.SearchStrategy[bytes]:
    """JSON objects whose keys are mostly the decoder's own, with arbitrary values."""
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), JSON_VALUES, max_size=len(keys) + 2).map(
        lambda data: json.dumps(data).encode()
    )


def decodes_or_schema_error(decode: Callable[[bytes], object], payload: bytes) -> None:
    with contextlib.suppress(SchemaError):
        decode(payload)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600) | json_maps([*FaceResult.__dataclass_fields__]))
def test_result_decoder_never_fails_other_than_schema_error(payload: bytes) -> None:
    decodes_or_schema_error(FaceResult.from_json, payload)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600) | json_maps([*Alert.__dataclass_fields__]))
def test_alert_decoder_never_fails_other_than_schema_error(payload: bytes) -> None:
    decodes_or_schema_error(Alert.from_json, payload)


@settings(max_examples=2000, deadline=None)
@given(
    st.binary(max_size=600)
    | st.builds(
        lambda op, rest: json.dumps({**rest, "op": op}).encode(),
        st.sampled_from(sorted(OPS)),
        st.dictionaries(st.sampled_from(sorted(COMMON | set().union(*FIELDS.values()))), JSON_VALUES, max_size=6),
    )
)
def test_gallery_command_decoder_never_fails_other_than_schema_error(payload: bytes) -> None:
    decodes_or_schema_error(GalleryCommand.from_json, payload)


def png(width: int, height: int, pixels: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (8-bit grey) with ``pixels`` as its (zlib) data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data",
    [png(60_000, 60_000), png(8_000, 6_000), png(4, 4, b"\x00" * 3), b"GIF89a" + b"\x00" * 20, b"%PDF-1.4", b""],
    ids=["bomb-3.6Gpx", "48Mpx", "truncated", "broken-gif", "pdf", "empty"],
)
def test_enrolment_image_bombs_and_non_images_are_refused_before_decoding(data: bytes) -> None:
    with pytest.raises(ImageError):
        decode_image(data, "upload")


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=2000))
def test_image_decoder_never_fails_other_than_image_error(data: bytes) -> None:
    with contextlib.suppress(ImageError):
        decode_image(data, "fuzz")


def malformed(kind: str, i: int) -> tuple[str, bytes]:
    """A bad (topic, payload) of the given kind; the classifier must dead-letter it with that reason."""
    good = {"node": "cam-1", "seq": 1_000_000 + i, "ts": time.time(), "emb": unit(seed=i)}
    topic = "facewire/embeddings/cam-1"
    payloads: dict[str, Callable[[], bytes]] = {
        "not-msgpack": lambda: b"\xc1" + bytes([i % 256]),
        "wrong-type": lambda: msgpack.packb([i, 2, 3]),
        "oversize": lambda: b"\x00" * 70_000,
        "not-finite": lambda: _nan(good),
        "not-normalised": lambda: _raw(good, emb=(unit(seed=i) * 3).astype("<f2").tobytes()),
        "wrong-dimension": lambda: embedding(**{**good, "emb": unit(dim=64, seed=i)}).to_msgpack(),
        "model-mismatch": lambda: embedding(**{**good, "model": "arcface-r100"}).to_msgpack(),
        "node-mismatch": lambda: embedding(**{**good, "node": "cam-2"}).to_msgpack(),
        "future-timestamp": lambda: embedding(**{**good, "ts": time.time() + 3600}).to_msgpack(),
        "stale-timestamp": lambda: embedding(**{**good, "ts": 1_700_000_000.0}).to_msgpack(),
    }
    return topic, payloads[kind]()


def _raw(good: dict[str, object], **changes: object) -> bytes:
    data = msgpack.unpackb(embedding(**good).to_msgpack())
    data.update(changes)
    return msgpack.packb(data, use_bin_type=True)


def _nan(good: dict[str, object]) -> bytes:
    return _raw(good, emb=np.full(128, np.nan, dtype="<f2").tobytes())


KINDS = [
    "not-msgpack",
    "wrong-type",
    "oversize",
    "not-finite",
    "not-normalised",
    "wrong-dimension",
    "model-mismatch",
    "node-mismatch",
    "future-timestamp",
    "stale-timestamp",
]
BAD_PER_KIND = 300
GOOD = 1000


@pytest.mark.slow
def test_malformed_flood_is_dead_lettered_by_reason_while_good_messages_are_answered(
    broker: LocalBroker, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEWIRE_CLASSIFIER__MAX_AGE_SECONDS", "86400")
    gallery, _probes = split_sample(sample_dir, tmp_path)
    status_topic = "facewire/services/classifier/flood/status"
    letters = Collector(broker.url, ["facewire/deadletter/#", status_topic]).start()
    results = ResultCounter(broker.url, "test-results").start()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="flood").start()
    sender = MqttConnection(MqttSettings(url=broker.url), "flooder")
    sender.connect()
    started = time.monotonic()
    try:
        good_keys = set()
        for i in range(BAD_PER_KIND * len(KINDS)):
            sender.publish(*malformed(KINDS[i % len(KINDS)], i))
            if i % 3 == 0 and len(good_keys) < GOOD:
                seq = len(good_keys)
                sender.publish("facewire/embeddings/cam-1", embedding(seq=seq, ts=time.time()).to_msgpack())
                good_keys.add(("cam-1", seq))
        results.wait_for(good_keys, timeout=120)
        letters.wait_for(lambda t: "deadletter" in t, BAD_PER_KIND * len(KINDS), timeout=120)
        elapsed = time.monotonic() - started
        assert classifier.stop() == 0, "the classifier is still alive and exits cleanly"
        time.sleep(0.5)  # its final (offline) status carries the counters
    finally:
        classifier.stop()
        sender.close()
        results.stop()
        letters.stop()
    reasons = Counter(json.loads(p)["reason"] for t, p in letters.matching(lambda t: "deadletter" in t))
    assert reasons == dict.fromkeys(KINDS, BAD_PER_KIND)
    assert results.missing(good_keys) == set() and results.duplicates() == 0
    status = json.loads(letters.matching(lambda t: t == status_topic)[-1][1])
    assert status["deadletter_reasons"] == dict.fromkeys(KINDS, BAD_PER_KIND)
    print(f"flood: {sum(reasons.values())} malformed + {len(good_keys)} good in {elapsed:.1f}s, all good answered")
