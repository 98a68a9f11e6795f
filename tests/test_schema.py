"""Every message class: encoding, round trips, every rejection reason of the decoders, hostile input."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import replace

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facewire.errors import SchemaError
from facewire.schema import SCHEMA_VERSION, Alert, Candidate, DeadLetter, Evidence, FaceEmbedding, FaceResult
from facewire.schema.catalog import MESSAGES
from facewire.schema.gallery import GalleryCommand, GalleryEvent
from facewire.schema.homeassistant import SensorAttributes, SensorState
from facewire.schema.identify import IdentifiedFace, IdentifyRequest, IdentifyResponse
from facewire.schema.replay import ReplayRequest
from facewire.schema.stats import GridPoint, Histograms, OperatingPoint, ThresholdReport
from facewire.schema.status import NodesSummary, NodeStatus, NodeView, ServiceStatus
from facewire.schema.thumbnail import Thumbnail


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


# Every message class of facewire.schema.catalog: one example each, round trips, rejections, hostile input.

EXAMPLES: dict[str, object] = {
    "FaceResult": result(),
    "ReplayRequest": ReplayRequest("recorder-rec", 1.5),
    "Thumbnail": Thumbnail("cam-1", 7, 2, 1.5, b"\xff\xd8\xff\xe0 a jpeg"),
    "Alert": Alert(
        "unknown:cam-1:7",
        "unknown",
        "cam-1",
        "cam-1",
        "unknown face",
        1.5,
        2.0,
        (Evidence("cam-1", 7, 2, "x", 0.1, 1.5),),
    ),
    "DeadLetter": DeadLetter("emb-length", "12 bytes", "facewire/embeddings/cam-1", b"\x81\xa1v", "classifier", 3, 2.5),
    "NodeStatus": NodeStatus("cam-1", "online", 1.5, model="sface", frames=10, fps=2.5, spool_depth=0),
    "ServiceStatus": ServiceStatus("c1", "online", 1.5, {"queue": {"cam-1": 2}, "model": "sface", "threshold": 0.45}),
    "ThresholdReport": ThresholdReport(
        1.5,
        1e-3,
        "g1",
        "sface",
        {"genuine": 10},
        OperatingPoint(0.5, 0.001, 0.1, "tail-fit"),
        None,
        (GridPoint(0.5, 0.001, 0.1, None),),
        Histograms(-1.0, 0.02, (1, 2), (3, 4), ()),
    ),
    "NodesSummary": NodesSummary(1.5, (NodeView("cam-1", "stale", 1.0, 0.5, 2.5, None, 3, "sface", ""),)),
    "GalleryCommand": GalleryCommand("rename", "r1", "ada", person="Ada", to="Ada Lovelace"),
    "GalleryEvent": GalleryEvent("forgotten", "r1", "c1", "forget", "g2", 3, 40, 1.5, {"person": "Bob", "removed": 4}),
    "IdentifyRequest": IdentifyRequest((b"\xff\xd8\xff photo",), 5, "facewire/identify/resp/me", "42"),
    "IdentifyResponse": IdentifyResponse(
        True, ((IdentifiedFace((1.0, 2.0, 3.0, 4.0), 0.9, "Ada", 0.71, True, (Candidate("Ada", 0.71),)),), ()), 0.45
    ),
    "SensorState": SensorState("Ada Lovelace"),
    "SensorAttributes": SensorAttributes(0.71, "2026-12-02T03:00:00+00:00", "cam-1"),
}
JSON_DECODERS = [name for name, codec in MESSAGES.items() if codec.content_type == "application/json"]
UNVERSIONED = {"SensorAttributes"}  # Home Assistant shows every key as an attribute


def test_every_message_class_has_an_example() -> None:
    assert set(EXAMPLES) | {"FaceEmbedding"} == set(MESSAGES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_message_round_trips(name: str) -> None:
    codec = MESSAGES[name]
    payload = codec.encode(EXAMPLES[name])
    assert codec.decode(payload) == EXAMPLES[name]
    assert codec.encode(codec.decode(payload)) == payload


@pytest.mark.parametrize("name", sorted(set(JSON_DECODERS) - UNVERSIONED))
def test_every_json_message_carries_its_version(name: str) -> None:
    codec = MESSAGES[name]
    data = json.loads(codec.encode(EXAMPLES[name]))
    assert data["v"] == SCHEMA_VERSION
    for version, reason in ((None, "missing-version"), (2, "unknown-version"), ("1", "wrong-type")):
        changed = {k: v for k, v in data.items() if k != "v"} | ({} if version is None else {"v": version})
        if version is None and not getattr(codec.kind, "VERSION_REQUIRED", True):
            assert codec.decode(json.dumps(changed).encode()) == EXAMPLES[name]  # written by people: absent is v1
        else:
            assert rejection(name, json.dumps(changed).encode()) == reason


def rejection(name: str, payload: bytes) -> str:
    with pytest.raises(SchemaError) as caught:
        MESSAGES[name].decode(payload)
    return caught.value.reason


def changed(name: str, **fields: object) -> bytes:
    data = json.loads(MESSAGES[name].encode(EXAMPLES[name]))
    return json.dumps({**data, **fields}).encode()


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("Thumbnail", lambda: changed("Thumbnail", jpeg=base64.b64encode(b"GIF89a").decode()), "not-jpeg"),
        ("Thumbnail", lambda: changed("Thumbnail", jpeg="@@@"), "bad-base64"),
        ("Thumbnail", lambda: changed("Thumbnail", node="../x"), "bad-node"),
        ("Thumbnail", lambda: changed("Thumbnail", seq=-1), "out-of-range"),
        ("Thumbnail", lambda: changed("Thumbnail", extra=1), "unknown-field"),
        ("Alert", lambda: changed("Alert", evidence={"node": "x"}), "wrong-type"),
        ("Alert", lambda: changed("Alert", ts=float("nan")), "not-finite"),
        ("DeadLetter", lambda: changed("DeadLetter", size="3"), "wrong-type"),
        ("DeadLetter", lambda: changed("DeadLetter", reason=""), "wrong-type"),
        ("NodeStatus", lambda: changed("NodeStatus", state="sleepy"), "bad-value"),
        ("NodeStatus", lambda: changed("NodeStatus", fps="fast"), "wrong-type"),
        ("NodeStatus", lambda: changed("NodeStatus", temperature=40), "unknown-field"),
        ("ServiceStatus", lambda: changed("ServiceStatus", queue={"cam-1": -1}), "out-of-range"),
        ("ServiceStatus", lambda: changed("ServiceStatus", queue={"cam-1": "2"}), "wrong-type"),
        ("ServiceStatus", lambda: changed("ServiceStatus", instance=""), "wrong-type"),
        ("ServiceStatus", lambda: changed("ServiceStatus", **{f"k{i}": i for i in range(70)}), "out-of-range"),
        ("ThresholdReport", lambda: changed("ThresholdReport", grid=[{"threshold": "x"}]), "wrong-type"),
        ("ThresholdReport", lambda: changed("ThresholdReport", grid=[{"threshold": 0.5, "x": 1}]), "unknown-field"),
        ("ThresholdReport", lambda: changed("ThresholdReport", recommended=[0.5]), "wrong-type"),
        ("ThresholdReport", lambda: changed("ThresholdReport", counts={"genuine": 1.5}), "wrong-type"),
        ("NodesSummary", lambda: changed("NodesSummary", nodes=[{"node": "cam-1"}]), "bad-value"),
        ("NodesSummary", lambda: changed("NodesSummary", nodes="cam-1"), "wrong-type"),
        ("GalleryCommand", lambda: changed("GalleryCommand", op="explode"), "unknown-op"),
        ("GalleryCommand", lambda: changed("GalleryCommand", to="Ada"), "same-name"),
        ("GalleryCommand", lambda: changed("GalleryCommand", person="../etc"), "bad-person"),
        ("GalleryCommand", lambda: changed("GalleryCommand", person="unknown"), "bad-person"),
        ("GalleryCommand", lambda: changed("GalleryCommand", person="Ann Lee\n"), "bad-person"),
        ("GalleryCommand", lambda: changed("GalleryCommand", images=["x"]), "unknown-field"),
        ("GalleryCommand", lambda: changed("GalleryCommand", op="reject", to=None, person=None), "unknown-field"),
        ("GalleryCommand", lambda: json.dumps({"v": 1, "op": "reject", "result": "cam-1"}).encode(), "bad-result"),
        ("GalleryCommand", lambda: json.dumps({"v": 1, "op": "enroll", "person": "Ada"}).encode(), "missing-field"),
        (
            "GalleryCommand",
            lambda: json.dumps({"v": 1, "op": "enroll", "person": "Ada", "embeddings": [[3.0, 4.0]]}).encode(),
            "not-normalised",
        ),
        (
            "GalleryCommand",
            lambda: json.dumps({"v": 1, "op": "enroll", "person": "Ada", "embeddings": [[1e300, 0.0]]}).encode(),
            "not-normalised",
        ),
        (
            "GalleryCommand",
            lambda: json.dumps({"op": "enroll", "person": "Ada", "embeddings": [[int("9" * 400), 0]]}).encode(),
            "not-normalised",
        ),
        ("GalleryCommand", lambda: json.dumps({"op": "reject", "result": "cam-1/\u00b2"}).encode(), "bad-result"),
        ("GalleryEvent", lambda: changed("GalleryEvent", id=""), "wrong-type"),
        ("GalleryEvent", lambda: changed("GalleryEvent", people=-1), "out-of-range"),
        ("GalleryEvent", lambda: changed("GalleryEvent", clusters=[[[[[[["deep"]]]]]]]), "too-deep"),
        ("IdentifyRequest", lambda: changed("IdentifyRequest", images=[]), "wrong-type"),
        ("IdentifyRequest", lambda: changed("IdentifyRequest", images=["/9j/"] * 9), "out-of-range"),
        ("IdentifyRequest", lambda: changed("IdentifyRequest", top_k=0), "out-of-range"),
        ("IdentifyRequest", lambda: changed("IdentifyRequest", images=["not base64!"]), "bad-base64"),
        ("IdentifyResponse", lambda: changed("IdentifyResponse", ok="yes"), "wrong-type"),
        ("IdentifyResponse", lambda: changed("IdentifyResponse", results=[{"faces": [{"name": "x"}]}]), "wrong-type"),
        ("SensorState", lambda: b"", "wrong-type"),
        ("SensorState", lambda: b"\xff\xfe", "not-utf8"),
        ("SensorState", lambda: b"line\nbreak", "wrong-type"),
        ("SensorAttributes", lambda: changed("SensorAttributes", camera="a/b"), "bad-node"),
        ("SensorAttributes", lambda: changed("SensorAttributes", v=1), "unknown-field"),
    ],
)
def test_bad_payloads_are_refused_with_the_precise_reason(name: str, payload: Callable[[], bytes], reason: str) -> None:
    assert rejection(name, payload()) == reason


@pytest.mark.parametrize("name", JSON_DECODERS)
def test_hostile_json_ends_as_a_schema_error(name: str) -> None:
    assert rejection(name, b"[" * 100_000) in ("oversize", "too-deep")
    assert rejection(name, b'{"v": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}") == "too-deep"
    assert rejection(name, b'{"v": 1, "seq": ' + b"9" * 5000 + b"}") == "huge-number"
    assert rejection(name, b'{"v": 1, "node": "\xff"}') == "not-json"
    assert rejection(name, b"[1, 2]") == "wrong-type"


def test_result_and_alert_refuse_the_issue_18_payloads() -> None:
    for decode in (FaceResult.from_json, Alert.from_json):
        for payload in (b"[" * 100_000, b"9" * 5000, b'{"v": 1, "ts": ' + b"1" * 5000 + b"}"):
            with pytest.raises(SchemaError):
                decode(payload)


def test_gallery_command_with_embeddings_round_trips() -> None:
    command = GalleryCommand("enroll", "e1", "ada", person="Ada", embeddings=np.stack([unit(), unit(seed=1)]))
    command = replace(command, model="sface", sources=("a", "b"))
    decoded = GalleryCommand.from_json(command.to_json())
    assert (decoded.op, decoded.person, decoded.model, decoded.sources) == ("enroll", "Ada", "sface", ("a", "b"))
    assert decoded.embeddings is not None and command.embeddings is not None
    assert np.allclose(decoded.embeddings, command.embeddings, atol=1e-3)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


def field_names(name: str) -> list[str]:
    return sorted(json.loads(MESSAGES[name].encode(EXAMPLES[name])))


@pytest.mark.parametrize("name", JSON_DECODERS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_json_decoders_fail_only_with_schema_error(name: str, data: st.DataObject) -> None:
    known = st.dictionaries(st.sampled_from(field_names(name)), JSON_VALUES, max_size=8)
    body = data.draw(st.one_of(JSON_VALUES, known.map(lambda d: {**d, "v": 1}), known))
    mutated = {**json.loads(MESSAGES[name].encode(EXAMPLES[name])), **data.draw(known)}
    for payload in (json.dumps(body).encode(), json.dumps(mutated).encode(), data.draw(st.binary(max_size=64))):
        with contextlib.suppress(SchemaError):
            MESSAGES[name].decode(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_sensor_state_decoder_fails_only_with_schema_error(payload: bytes) -> None:
    with contextlib.suppress(SchemaError):
        SensorState.from_text(payload)


# Text fields refuse control characters (an ESC sequence would reach an operator's terminal) and lone surrogates.

CONTROL_CHARACTERS = ["\x1b[2J", "\x00", "\x07", "\x7f", "\x9b"]


def string_fields(name: str) -> list[str]:
    data = json.loads(MESSAGES[name].encode(EXAMPLES[name]))
    return sorted(key for key, value in data.items() if isinstance(value, str) and key != "v")


@pytest.mark.parametrize("name", [name for name in JSON_DECODERS if string_fields(name)])
def test_text_fields_refuse_control_characters(name: str) -> None:
    codec = MESSAGES[name]
    data = json.loads(codec.encode(EXAMPLES[name]))
    for key in string_fields(name):
        for bad in CONTROL_CHARACTERS:
            with pytest.raises(SchemaError):
                codec.decode(json.dumps({**data, key: data[key][:8] + bad}).encode())
        surrogate = json.dumps({**data, key: "x"}).replace(f'"{key}": "x"', f'"{key}": "x\\ud800"')
        with pytest.raises(SchemaError):
            codec.decode(surrogate.encode())


def test_control_characters_are_named_in_the_reason_and_line_breaks_pass() -> None:
    alert = json.loads(MESSAGES["Alert"].encode(EXAMPLES["Alert"]))
    assert rejection("Alert", json.dumps({**alert, "message": "x\x1b[31m"}).encode()) == "control-char"
    assert (
        Alert.from_json(json.dumps({**alert, "message": "two\nlines\tand a tab\r\n"}).encode()).message.count("\n") == 2
    )
    evidence = {**alert["evidence"][0], "name": "\x1b]0;pwned\x07"}
    assert rejection("Alert", json.dumps({**alert, "evidence": [evidence]}).encode()) == "control-char"
    result = json.loads(MESSAGES["FaceResult"].encode(EXAMPLES["FaceResult"]))
    assert rejection("FaceResult", json.dumps({**result, "model": "sface\u0000"}).encode()) == "control-char"


def test_embedding_text_fields_refuse_control_characters() -> None:
    good = msgpack.unpackb(embedding().to_msgpack(), raw=False)
    with pytest.raises(SchemaError, match="control-char"):
        FaceEmbedding.from_msgpack(msgpack.packb({**good, "model": "sface\x1b[2J"}, use_bin_type=True))


def test_a_dead_letter_quoting_a_hostile_message_stays_readable() -> None:
    """A dead letter repeats the refused message's topic and detail: they are escaped, so the letter itself
    is never refused by the decoders that read it (the monitor, `facewire deadletters`)."""
    letter = DeadLetter("unknown-field", "\x1b]0;owned\x07, \ud800", "facewire/embeddings/cam\x1b[2J", b"\x81")
    decoded = DeadLetter.from_json(letter.to_json("classifier"))
    assert decoded.detail == "\\x1b]0;owned\\x07, \\ud800"
    assert decoded.topic == "facewire/embeddings/cam\\x1b[2J"
