"""The AsyncAPI 3.0 description of facewire's MQTT API, generated from the topic and schema modules.

``docs/asyncapi.yaml`` is this module's output; regenerate it after changing a
channel in ``facewire.topics`` or a message class in ``facewire.schema``::

    python -m facewire.asyncapi docs/asyncapi.yaml

``tests/test_topics_config.py`` fails while the committed file and the code disagree.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

from facewire import __version__
from facewire.schema.catalog import MESSAGES
from facewire.schema.fields import SCHEMA_VERSION
from facewire.schema.identify import IdentifiedFace
from facewire.topics import CHANNELS, Channel

PREFIX = "facewire"
BASE64 = {"type": "string", "contentEncoding": "base64"}
DETAIL = {"type": ["integer", "number", "string", "object", "array", "boolean", "null"]}
# Where the wire differs from a class's fields: (class, field) -> (wire name, JSON schema); None drops the field.
WIRE: dict[tuple[str, str], tuple[str, dict[str, Any]] | None] = {
    ("FaceEmbedding", "emb"): ("emb", {"type": "string", "format": "binary", "description": "little-endian float16"}),
    ("DeadLetter", "payload"): ("excerpt_b64", {**BASE64, "description": "the first 96 bytes of the refused message"}),
    ("GalleryCommand", "embeddings"): ("embeddings", {"type": "array", "items": {**BASE64, "description": "float16"}}),
    ("GalleryCommand", "result"): ("result", {"type": "string", "pattern": "^[^/]+/[0-9]+$"}),
    ("IdentifyResponse", "results"): (
        "results",
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"faces": {"type": "array", "items": {"$ref": "#/components/schemas/IdentifiedFace"}}},
            },
        },
    ),
}
EXTRA: dict[str, dict[str, Any]] = {"FaceEmbedding": {"dim": {"type": "integer", "minimum": 1}}}
ALWAYS_WRITTEN = {"DeadLetter": ("service", "size", "ts"), "FaceResult": ("bbox", "candidates")}
FLATTENED = {"details"}  # a dict field written beside the others, not nested


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as plain data."""
    schemas: dict[str, Any] = {}
    for kind in [codec.kind for codec in MESSAGES.values()] + [IdentifiedFace]:  # the latter: only in a WIRE entry
        _add_schema(kind, schemas)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "facewire",
            "version": __version__,
            "description": (
                "Face recognition over MQTT 5. Topics are shown under the default prefix 'facewire' "
                "(mqtt.topic_prefix). Every JSON payload carries its schema version 'v' "
                f"(this build: {SCHEMA_VERSION}); a consumer refuses any other."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"broker": {"host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5.0"}},
        "channels": {channel.name: _channel(channel) for channel in CHANNELS},
        "operations": _operations(),
        "components": {
            "messages": {
                name: {
                    "name": name,
                    "contentType": codec.content_type,
                    "summary": _summary(codec.kind),
                    "payload": {"$ref": f"#/components/schemas/{name}"},
                }
                for name, codec in sorted(MESSAGES.items())
            },
            "schemas": dict(sorted(schemas.items())),
        },
    }


def _channel(channel: Channel) -> dict[str, Any]:
    parameters = re.findall(r"{(\w+)}", channel.address)
    found: dict[str, Any] = {
        "address": f"{PREFIX}/{channel.address}",
        "description": channel.description,
        "messages": {channel.message: {"$ref": f"#/components/messages/{channel.message}"}},
    }
    if parameters:
        found["parameters"] = {name: {"description": f"one topic level: the {name}"} for name in parameters}
    return found


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for channel in CHANNELS:
        for action, parties in (("send", channel.publishers), ("receive", channel.subscribers)):
            operations[f"{channel.name}-{action}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel.name}"},
                "summary": ("published by " if action == "send" else "read by ") + ", ".join(parties),
                "messages": [{"$ref": f"#/channels/{channel.name}/messages/{channel.message}"}],
                "bindings": {"mqtt": {"qos": 1, "retain": channel.retained}},
            }
    return operations


def _summary(kind: type) -> str:
    return (kind.__doc__ or kind.__name__).strip().splitlines()[0]


def _add_schema(kind: type, schemas: dict[str, Any]) -> None:
    name = kind.__name__
    if name in schemas:
        return
    schemas[name] = {}  # placeholder against recursion
    hints = typing.get_type_hints(kind)
    properties: dict[str, Any] = {}
    required: list[str] = []
    extra_properties: dict[str, Any] | None = None
    for item in dataclasses.fields(kind):
        if item.name in FLATTENED:
            extra_properties = DETAIL
            continue
        if (name, item.name) in WIRE:
            wire = WIRE[(name, item.name)]
            if wire is None:
                continue
            wire_name, schema = wire
        else:
            wire_name, schema = item.name, _type_schema(hints[item.name], schemas)
        if item.name == "v":
            schema = {"type": "integer", "const": SCHEMA_VERSION}
        properties[wire_name] = schema
        has_default = item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING
        version_required = item.name == "v" and getattr(kind, "VERSION_REQUIRED", True)
        if not has_default or version_required or item.name in ALWAYS_WRITTEN.get(name, ()):
            required.append(wire_name)
    properties.update(EXTRA.get(name, {}))
    required += list(EXTRA.get(name, {}))
    schema_of: dict[str, Any] = {"type": "object", "description": _summary(kind), "properties": properties}
    if required:
        schema_of["required"] = required
    schema_of["additionalProperties"] = extra_properties if extra_properties is not None else False
    schemas[name] = schema_of


def _type_schema(hint: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [_type_schema(arg, schemas) for arg in args if arg is not type(None)]
        nullable = type(None) in args
        if len(options) == 1 and nullable:
            return {"anyOf": [options[0], {"type": "null"}]}
        return {"anyOf": options + ([{"type": "null"}] if nullable else [])}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], schemas)}
        items = [_type_schema(arg, schemas) for arg in args]  # draft-07 tuple form (AsyncAPI schemas are draft-07)
        return {"type": "array", "items": items, "minItems": len(items), "additionalItems": False}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], schemas)}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        _add_schema(hint, schemas)
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    simple = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}}
    if hint in simple:
        return simple[hint]
    if hint is bytes:
        return dict(BASE64)
    if hint is Any:
        return {}
    if hint is np.ndarray:
        raise TypeError("an ndarray field needs an entry in facewire.asyncapi.WIRE")
    raise TypeError(f"no JSON schema for {hint!r}")


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML of plain data; strings are JSON-quoted (valid YAML), so no value needs escaping rules."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key, item in value.items():
            label = key if re.fullmatch(r"[A-Za-z_$][\w.$-]*", key) else json.dumps(key)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{label}:\n{to_yaml(item, indent + 1)}")
            else:
                lines.append(f"{pad}{label}: {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body[len(pad) + 2 :]}")
            else:
                lines.append(f"{pad}- {to_yaml(item)}")
        return "\n".join(lines)
    return json.dumps(value)


def render() -> str:
    """The text of ``docs/asyncapi.yaml``."""
    return (
        "# Generated by 'python -m facewire.asyncapi docs/asyncapi.yaml': do not edit by hand.\n"
        + to_yaml(document())
        + "\n"
    )


def main(argv: list[str]) -> int:
    """Write the document to the path given, or to standard output."""
    if argv:
        Path(argv[0]).write_text(render(), encoding="utf-8")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
