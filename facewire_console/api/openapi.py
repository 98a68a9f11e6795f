"""The OpenAPI 3.1 contract of ``/api/v1`` (served at ``/api/v1/openapi.json``, committed as docs/openapi.json)."""

from __future__ import annotations

from typing import Any

from facewire_console.api.errors import CODES

NUMBER = {"type": "number"}
TEXT = {"type": "string"}
FILTER = {"type": "string", "minLength": 1}
OBJECT = {"type": "object"}
TIME = {"type": "number", "description": "Epoch seconds"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A closed object schema: every listed property required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        **extra,
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


SCHEMAS: dict[str, Any] = {
    "Error": obj(
        {"error": obj({"code": {"type": "string", "enum": sorted(CODES)}, "message": TEXT})},
        description="Every refusal: a stable code and a readable message.",
    ),
    "Candidate": obj({"name": TEXT, "score": NUMBER}),
    "Face": obj(
        {
            "name": {"type": "string", "description": "The person, or `unknown`"},
            "known": {"type": "boolean"},
            "score": NUMBER,
            "bbox": {
                "type": "array",
                "items": NUMBER,
                "minItems": 4,
                "maxItems": 4,
                "description": "x, y, width, height in pixels of the photo sent (zeros for an embedding)",
            },
            "candidates": {"type": "array", "items": ref("Candidate")},
        }
    ),
    "Recognition": obj(
        {
            "faces": {"type": "array", "items": ref("Face"), "description": "Every face, largest first"},
            "model": TEXT,
            "gallery_version": TEXT,
        }
    ),
    "EmbeddingRequest": obj(
        {
            "embedding": {"type": "array", "items": NUMBER, "minItems": 1, "maxItems": 4096},
            "model": {"type": "string", "minLength": 1, "description": "Must be the model the classifiers serve"},
        }
    ),
    "ImageUpload": obj({"image": {"type": "string", "contentMediaType": "image/jpeg", "contentEncoding": "binary"}}),
    "PhotosUpload": obj(
        {"image": {"type": "array", "items": {"type": "string", "contentEncoding": "binary"}, "maxItems": 16}}
    ),
    "LastSeen": obj({"ts": TIME, "node": TEXT}),
    "Subject": obj({"name": TEXT, "photos": {"type": "integer"}, "last_seen": nullable(ref("LastSeen"))}),
    "SubjectList": obj({"subjects": {"type": "array", "items": ref("Subject")}}),
    "PhotoVerdict": obj({"filename": TEXT, "accepted": {"type": "boolean"}, "reason": TEXT}),
    "Enrolment": obj(
        {"subject": TEXT, "photos": {"type": "array", "items": ref("PhotoVerdict")}, "accepted": {"type": "integer"}}
    ),
    "Rename": obj({"name": {"type": "string", "minLength": 1, "maxLength": 64}}),
    "Renamed": obj({"subject": TEXT, "renamed_from": TEXT, "replicas": {"type": "integer"}}),
    "Forgotten": obj({"subject": TEXT, "forgotten": {"const": True}, "replicas": {"type": "integer"}}),
    "LogRow": obj(
        {
            "node": TEXT,
            "seq": {"type": "integer"},
            "ts": TIME,
            "name": TEXT,
            "known": {"type": "boolean"},
            "score": NUMBER,
            "threshold": NUMBER,
            "model": TEXT,
            "gallery_version": TEXT,
            "candidates": {"type": "array", "items": ref("Candidate")},
        }
    ),
    "LogPage": obj(
        {
            "items": {"type": "array", "items": ref("LogRow")},
            "next_cursor": nullable({"type": "string", "description": "Pass as `cursor` for the next page"}),
        }
    ),
    "Node": obj(
        {
            "node": TEXT,
            "state": {"type": "string", "enum": ["online", "stale", "offline"]},
            "last_seen": TIME,
            "age": NUMBER,
            "fps": nullable(NUMBER),
            "faces_per_s": nullable(NUMBER),
            "queue": nullable({"type": "integer"}),
            "model": TEXT,
            "reason": TEXT,
        }
    ),
    "NodeList": obj({"nodes": {"type": "array", "items": ref("Node")}}),
    "Alert": obj(
        {
            "id": TEXT,
            "rule": TEXT,
            "node": TEXT,
            "subject": TEXT,
            "message": TEXT,
            "ts": TIME,
            "raised_at": TIME,
            "count": {"type": "integer"},
            "last_ts": TIME,
            "acked_at": nullable(TIME),
            "acked_by": nullable(TEXT),
        }
    ),
    "AlertList": obj({"alerts": {"type": "array", "items": ref("Alert")}}),
    "Acknowledged": obj({"id": TEXT, "acknowledged": {"const": True}}),
    "ThresholdReport": {
        "type": "object",
        "description": "The report the stats subscriber retains (as `facewire stats --json` prints it)",
    },
}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def ok(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def guarded(scope: str, summary: str, responses: dict[str, Any], **operation: Any) -> dict[str, Any]:
    """An operation that needs a key of ``scope`` (or a wider one)."""
    return {
        "summary": summary,
        "description": f"Needs a key with scope `{scope}` or wider.",
        "security": [{"apiKey": []}],
        "responses": {
            "422": error("An unknown or empty query parameter (`invalid`)"),
            **responses,
            "401": error("No key, or an unknown or revoked one (`missing-key`, `bad-key`)"),
            "403": error("The key's scope does not allow this (`wrong-scope`)"),
            "429": {
                **error("The key's rate limit is spent (`rate-limited`)"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
        **operation,
    }


NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
NO_ROUTE = error("A name no route matches, e.g. with a line break (`not-found`)")
UNAVAILABLE = error("No classifier replica answered (`no-classifier`)")
INVALID = error("Input refused, with the reason (`invalid`, `unreadable-image`)")


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PATHS: dict[str, Any] = {
    "/recognize": {
        "post": guarded(
            "recognize",
            "Name every face of a photo, or one embedding",
            {
                "200": ok("Recognition", "The faces, largest first (none: an empty list)"),
                "400": error("A body that cannot be parsed (`bad-request`)"),
                "413": error("The image or body is larger than the limit (`too-large`)"),
                "415": error("Neither multipart nor JSON (`unsupported-media-type`)"),
                "422": INVALID,
                "503": UNAVAILABLE,
            },
            requestBody={
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": ref("ImageUpload")},
                    "application/json": {"schema": ref("EmbeddingRequest")},
                },
            },
        )
    },
    "/subjects": {
        "get": guarded(
            "read",
            "Enrolled people, photo counts, last seen",
            {"200": ok("SubjectList", "Sorted by name"), "503": UNAVAILABLE},
        )
    },
    "/subjects/{name}/photos": {
        "post": guarded(
            "admin",
            "Enrol photos of a person (each accepted or rejected with its reason)",
            {
                "200": ok("Enrolment", "The classifiers' verdict per photo, in order"),
                "400": error("A body that cannot be parsed (`bad-request`)"),
                "413": error("A photo or the body is larger than the limit: nothing is enrolled (`too-large`)"),
                "404": NO_ROUTE,
                "415": error("Not multipart (`unsupported-media-type`)"),
                "422": error("A bad name, no photo, or an unreadable photo: nothing is enrolled"),
                "503": UNAVAILABLE,
            },
            parameters=[NAME],
            requestBody={"required": True, "content": {"multipart/form-data": {"schema": ref("PhotosUpload")}}},
        )
    },
    "/subjects/{name}": {
        "delete": guarded(
            "admin",
            "Erase a person everywhere, as `facewire forget` does",
            {
                "200": ok("Forgotten", "Erased on every online replica"),
                "404": NO_ROUTE,
                "422": INVALID,
                "503": UNAVAILABLE,
            },
            parameters=[NAME],
        ),
        "patch": guarded(
            "admin",
            "Rename a person on every replica",
            {
                "200": ok("Renamed", "Renamed on every online replica"),
                "400": error("Not JSON (`bad-request`)"),
                "404": error("No such person (`not-found`)"),
                "409": error("The new name is taken, or the same (`conflict`)"),
                "413": error("Body too large (`too-large`)"),
                "415": error("Not JSON (`unsupported-media-type`)"),
                "422": INVALID,
                "503": UNAVAILABLE,
            },
            parameters=[NAME],
            requestBody={"required": True, "content": {"application/json": {"schema": ref("Rename")}}},
        ),
    },
    "/log": {
        "get": guarded(
            "read",
            "The detection log, newest first, with cursor paging",
            {"200": ok("LogPage", "One page"), "422": INVALID},
            parameters=[
                _query("person", FILTER, "Only this person"),
                _query("node", FILTER, "Only this node"),
                _query("since", FILTER, "Epoch seconds, ISO time, or 15m / 2h / 7d ago"),
                _query("until", FILTER, "As since (exclusive)"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Rows per page (default 50)"),
                _query("cursor", FILTER, "The next_cursor of the previous page"),
            ],
        )
    },
    "/nodes": {"get": guarded("read", "Edge nodes and their state", {"200": ok("NodeList", "Every node heard from")})},
    "/alerts": {
        "get": guarded(
            "read",
            "Alerts, newest first",
            {"200": ok("AlertList", "Unacknowledged only unless all=true"), "422": INVALID},
            parameters=[
                _query("all", {"type": "string", "enum": ["true", "false"]}, "Include acknowledged alerts"),
                _query("node", FILTER, "Only this node"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most this many (default 100)"),
            ],
        )
    },
    "/alerts/{id}/ack": {
        "post": guarded(
            "read",
            "Acknowledge an alert",
            {
                "200": ok("Acknowledged", "Acknowledged now"),
                "404": error("No unacknowledged alert with this id (`not-found`)"),
            },
            parameters=[{"name": "id", "in": "path", "required": True, "schema": TEXT}],
        )
    },
    "/stats/thresholds": {
        "get": guarded(
            "read",
            "Threshold statistics (FAR, FRR, recommendations)",
            {"200": ok("ThresholdReport", "The retained report"), "404": error("None retained yet (`not-found`)")},
        )
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``/api/v1``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "facewire API",
            "version": "1",
            "description": "Recognise, enrol and query facewire over REST; see docs/api.md.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "paths": PATHS,
    }
