"""Field checks shared by every decoder: each failure is a :class:`SchemaError` with a short reason.

JSON is parsed here only (:func:`json_object`), size-limited before parsing, so
hostile payloads (deep nesting, 5,000-digit numbers, invalid UTF-8) end as a
reason (``oversize``, ``too-deep``, ``huge-number``, ``not-json``), never as a
``RecursionError`` or ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from facewire.errors import SchemaError
from facewire.topics import valid_node_id

SCHEMA_VERSION = 1
MAX_TEXT = 256
# C0 controls but tab, line feed and carriage return; DEL and the C1 controls; UTF-16 surrogates.
UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
INT64_MAX = 2**63 - 1


def json_object(payload: bytes, limit: int) -> dict[str, Any]:
    """The JSON object in ``payload`` (at most ``limit`` bytes), or SchemaError with the reason."""
    if len(payload) > limit:
        raise SchemaError("oversize", f"{len(payload)} bytes > {limit}")
    try:
        data = json.loads(payload)
    except RecursionError as exc:
        raise SchemaError("too-deep", "nesting exceeds the parser's limit") from exc
    except json.JSONDecodeError as exc:
        raise SchemaError("not-json", str(exc)[:120]) from exc
    except UnicodeDecodeError as exc:
        raise SchemaError("not-json", str(exc)[:120]) from exc
    except ValueError as exc:  # int() refuses numbers of more than sys.get_int_max_str_digits() digits
        raise SchemaError("huge-number", str(exc)[:120]) from exc
    if not isinstance(data, dict):
        raise SchemaError("wrong-type", "payload is not an object")
    return data


def dump_json(data: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN and infinity are refused (they are not JSON)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def check_version(data: dict[str, Any], required: bool = True) -> None:
    """Refuse a missing (unless not ``required``), malformed or other schema version."""
    if not required and "v" not in data:
        return
    version = data.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError("missing-version" if version is None else "wrong-type", "v")
    if version != SCHEMA_VERSION:
        raise SchemaError("unknown-version", f"v={version}, this build reads v={SCHEMA_VERSION}")


def check_fields(data: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """Refuse keys the message does not define (a typo must not pass silently)."""
    unknown = data.keys() - allowed
    if unknown:
        raise SchemaError("unknown-field", ", ".join(sorted(map(str, unknown)))[:120])


def integer(data: dict[str, Any], key: str, low: int = 0, high: int = INT64_MAX) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError("wrong-type", f"{key} must be an integer")
    if not low <= value <= high:
        raise SchemaError("out-of-range", f"{key}={value}")
    return value


def number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError("wrong-type", f"{key} must be a number")
    try:
        result = float(value)
    except OverflowError as exc:
        raise SchemaError("out-of-range", f"{key} is too large") from exc
    if not math.isfinite(result):
        raise SchemaError("not-finite", key)
    return result


def text(data: dict[str, Any], key: str, longest: int = MAX_TEXT) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= longest:
        raise SchemaError("wrong-type", f"{key} must be a non-empty string")
    return printable(value, key)


def flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise SchemaError("wrong-type", f"{key} must be a boolean")
    return value


def optional_integer(data: dict[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else integer(data, key)


def optional_number(data: dict[str, Any], key: str) -> float | None:
    return None if data.get(key) is None else number(data, key)


def optional_text(data: dict[str, Any], key: str, longest: int = MAX_TEXT) -> str:
    """A string that may be absent or empty ("")."""
    value = data.get(key, "")
    if not isinstance(value, str) or len(value) > longest:
        raise SchemaError("wrong-type", f"{key} must be a string of at most {longest} characters")
    return printable(value, key)


def escaped(value: str) -> str:
    """``value`` with every character :func:`printable` refuses written as a Python escape (``\\x1b``)."""
    return UNPRINTABLE.sub(lambda found: found.group().encode("unicode_escape", "backslashreplace").decode(), value)


def printable(value: str, key: str) -> str:
    """``value`` unless it holds a control character other than tab and line breaks (an ESC sequence would
    reach the terminal of whoever watches the monitor or reads the log; PostgreSQL refuses a NUL) or a lone
    surrogate (JSON's ``"\\ud800"`` decodes to one, and no encoder can write it back)."""
    bad = UNPRINTABLE.search(value)
    if bad:
        raise SchemaError("control-char", f"{key} holds U+{ord(bad.group()):04X}")
    return value


def choice(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = data.get(key)
    if value not in allowed:
        raise SchemaError("bad-value", f"{key} must be one of {', '.join(allowed)}")
    return str(value)


def node(data: dict[str, Any], key: str = "node") -> str:
    value = text(data, key)
    if not valid_node_id(value):
        raise SchemaError("bad-node", repr(value[:64]))
    return value


def bbox(data: dict[str, Any]) -> tuple[float, float, float, float]:
    box = data.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise SchemaError("wrong-type", "bbox must be [x, y, w, h]")
    values = {f"bbox[{i}]": v for i, v in enumerate(box)}
    x, y, w, h = (number(values, f"bbox[{i}]") for i in range(4))
    return (x, y, w, h)


def number_map(data: dict[str, Any], key: str, longest: int = 32) -> dict[str, float]:
    """A small map of names to finite numbers (``quality``)."""
    raw = data.get(key)
    if not isinstance(raw, dict) or len(raw) > longest:
        raise SchemaError("wrong-type", f"{key} must be a small map")
    return {str(k): number(raw, k) for k in raw}


def count_map(data: dict[str, Any], key: str, longest: int = 1024) -> dict[str, int]:
    """A map of names to non-negative integers (per-reason or per-node counts); absent is empty."""
    raw = data.get(key, {})
    if not isinstance(raw, dict) or len(raw) > longest:
        raise SchemaError("wrong-type", f"{key} must be a map of at most {longest} counts")
    return {str(k)[:MAX_TEXT]: integer(raw, k) for k in raw}


def object_list(data: dict[str, Any], key: str, longest: int) -> list[dict[str, Any]]:
    """A list of at most ``longest`` JSON objects; absent is empty."""
    raw = data.get(key, [])
    if not isinstance(raw, list) or len(raw) > longest or not all(isinstance(item, dict) for item in raw):
        raise SchemaError("wrong-type", f"{key} must be a list of at most {longest} objects")
    return raw


def base64_bytes(data: dict[str, Any], key: str, longest: int) -> bytes:
    value = data.get(key)
    if not isinstance(value, str):
        raise SchemaError("wrong-type", f"{key} must be a base64 string")
    if len(value) > 4 * (longest + 2) // 3 + 4:
        raise SchemaError("oversize", f"{key} is over {longest} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError("bad-base64", f"{key}: {str(exc)[:80]}") from exc


def result_key(raw: object) -> tuple[str, int]:
    """A result's ``NODE/SEQ`` key."""
    if not isinstance(raw, str) or raw.count("/") != 1:
        raise SchemaError("bad-result", "result must be 'NODE/SEQ'")
    node_id, seq = raw.split("/")
    if not valid_node_id(node_id) or not (seq.isascii() and seq.isdigit()) or len(seq) > 19:
        raise SchemaError("bad-result", repr(raw)[:80])
    return node_id, int(seq)


def child(data: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested JSON object."""
    value = data.get(key)
    if not isinstance(value, dict):
        raise SchemaError("wrong-type", f"{key} must be an object")
    return value
