"""The ``/api/v1`` handlers: each checks the key and its scope, reads its input, then calls the gateway."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from alert_service.store import LogQuery
from alert_service.views_log import parse_when
from facewire.errors import ConfigError, SchemaError
from facewire.schema.gallery import valid_person
from facewire_console.api.errors import ApiError
from facewire_console.api.gateway import Gateway
from facewire_console.api.keys import ApiKey, KeyStore, RateLimiter, allows

JSON_BYTES = 256 * 1024  # a JSON body (an embedding is a few KB)
MAX_PHOTOS = 16
MAX_EMBEDDING = 4096
PAGE_LIMIT = 500


@dataclass
class Api:
    """What the handlers share: the keys, the rate limiter, the gateway and the OpenAPI document."""

    keys: KeyStore
    limiter: RateLimiter
    gateway: Gateway
    document: dict[str, Any]
    max_photo_bytes: int


Handler = Callable[[Request, ApiKey], Awaitable[Response]]


def api(request: Request) -> Api:
    state: Api = request.app.state.api
    return state


def authorize(request: Request, scope: str) -> ApiKey:
    """The request's key if it is live, allowed ``scope`` and within its rate; ApiError otherwise."""
    secret = request.headers.get("x-api-key", "")
    if not secret:
        raise ApiError("missing-key", "send an API key in the X-API-Key header")
    state = api(request)
    key = state.keys.lookup(secret)
    if key is None:
        raise ApiError("bad-key", "this API key is unknown or revoked")
    if not allows(key.scope, scope):
        raise ApiError("wrong-scope", f"key {key.name!r} has scope {key.scope!r}; this needs {scope!r}")
    wait = state.limiter.retry_after(key)
    if wait > 0:
        message = f"key {key.name!r} is limited to {key.per_minute} requests a minute: retry in {wait:.1f} s"
        raise ApiError("rate-limited", message, {"Retry-After": str(math.ceil(wait))})
    return key


def check_query(request: Request, known: tuple[str, ...]) -> None:
    """Refuse query parameters the endpoint does not take, and empty values (a typo must not pass unseen)."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise ApiError("invalid", f"unknown query parameter(s): {', '.join(repr(n[:40]) for n in unknown[:5])}")
    empty = [name for name, value in request.query_params.multi_items() if not value]
    if empty:
        raise ApiError("invalid", f"empty query parameter {empty[0]!r}")


def needs(scope: str, query: tuple[str, ...] = ()) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Guard a handler: the key must allow ``scope``, the query holds only ``query``; ApiErrors become JSON."""

    def wrap(func: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(func)
        async def guarded(request: Request) -> Response:
            try:
                key = authorize(request, scope)
                check_query(request, query)
                return await func(request, key)
            except ApiError as exc:
                return exc.response()

        return guarded

    return wrap


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it (or its declared length) passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError("too-large", f"request of {int(declared)} bytes is larger than the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError("too-large", f"request is larger than the limit of {limit} bytes")
    return bytes(body)


async def uploads(request: Request, body: bytes) -> list[tuple[str, bytes]]:
    """The multipart ``image`` fields of ``body``, in order."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=MAX_PHOTOS, max_fields=MAX_PHOTOS)
    except (HTTPException, MultiPartException) as exc:  # starlette turns parser errors into a 400
        raise ApiError("bad-request", f"not a readable multipart body: {str(exc)[:120]}") from exc
    try:
        files = [f for f in form.getlist("image") if isinstance(f, UploadFile)]
        return [((f.filename or "image")[:120], await f.read()) for f in files]
    finally:
        await form.close()


def json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError("bad-request", f"not JSON: {str(exc)[:120]}") from exc
    if not isinstance(data, dict):
        raise ApiError("invalid", "the body must be a JSON object")
    return data


def embedding_of(data: dict[str, Any]) -> tuple[list[float], str]:
    vector, model = data.get("embedding"), data.get("model")
    if set(data) - {"embedding", "model"}:
        raise ApiError("invalid", f"unknown fields: {', '.join(sorted(set(data) - {'embedding', 'model'}))}")
    if not isinstance(model, str) or not model:
        raise ApiError("invalid", "model must be the name of the embedding model (a string)")
    if not isinstance(vector, list) or not 1 <= len(vector) <= MAX_EMBEDDING:
        raise ApiError("invalid", f"embedding must be a list of 1..{MAX_EMBEDDING} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in vector):
        raise ApiError("invalid", "embedding must hold finite numbers only")
    return [float(v) for v in vector], model


def subject_name(text: str) -> str:
    try:
        return valid_person(text)
    except SchemaError as exc:
        raise ApiError("invalid", f"not a usable person name: {exc.detail or exc.reason}") from exc


@needs("recognize")
async def recognize(request: Request, _key: ApiKey) -> Response:
    state = api(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        images = await uploads(request, await read_body(request, state.max_photo_bytes + 64 * 1024))
        if len(images) != 1:
            raise ApiError("invalid", f"send exactly one multipart field 'image' ({len(images)} sent)")
        if len(images[0][1]) > state.max_photo_bytes:
            raise ApiError("too-large", f"image larger than the limit of {state.max_photo_bytes} bytes")
        answer = await run_in_threadpool(state.gateway.recognize_image, images[0][1])
    elif content_type.startswith("application/json"):
        vector, model = embedding_of(json_body(await read_body(request, JSON_BYTES)))
        answer = await run_in_threadpool(state.gateway.recognize_embedding, vector, model)
    else:
        raise ApiError("unsupported-media-type", "send multipart/form-data with 'image', or JSON with 'embedding'")
    return JSONResponse(answer)


@needs("read")
async def subjects(request: Request, _key: ApiKey) -> Response:
    return JSONResponse({"subjects": await run_in_threadpool(api(request).gateway.subjects)})


@needs("admin")
async def add_photos(request: Request, key: ApiKey) -> Response:
    state = api(request)
    person = subject_name(request.path_params["name"])
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError("unsupported-media-type", "send multipart/form-data with one or more 'image' fields")
    images = await uploads(request, await read_body(request, MAX_PHOTOS * state.max_photo_bytes + 64 * 1024))
    if not images:
        raise ApiError("invalid", "no multipart field 'image' was sent")
    verdicts = await run_in_threadpool(state.gateway.enroll, person, images, key.name)
    return JSONResponse({"subject": person, "photos": verdicts, "accepted": sum(v["accepted"] for v in verdicts)})


@needs("admin")
async def delete_subject(request: Request, key: ApiKey) -> Response:
    person = subject_name(request.path_params["name"])
    events = await run_in_threadpool(api(request).gateway.gallery, {"op": "forget", "person": person}, key.name)
    failed = [e for e in events if e.get("event") == "error"]
    if failed:
        raise ApiError("invalid", f"{failed[0].get('reason')}: {failed[0].get('detail', '')}".rstrip(": "))
    return JSONResponse({"subject": person, "forgotten": True, "replicas": len(events)})


@needs("admin")
async def rename_subject(request: Request, key: ApiKey) -> Response:
    person = subject_name(request.path_params["name"])
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError("unsupported-media-type", 'send JSON {"name": NEW}')
    data = json_body(await read_body(request, JSON_BYTES))
    if set(data) != {"name"} or not isinstance(data["name"], str):
        raise ApiError("invalid", 'the body must be {"name": NEW}')
    new = subject_name(data["name"])
    if new == person:
        raise ApiError("conflict", f"{person} already has that name")
    body = {"op": "rename", "person": person, "to": new}
    events = await run_in_threadpool(api(request).gateway.gallery, body, key.name)
    failed = [e for e in events if e.get("event") == "error"]
    if failed:
        reason = str(failed[0].get("reason"))
        if reason == "unknown-person":
            raise ApiError("not-found", f"no subject {person!r}")
        raise ApiError("conflict", f"cannot rename {person} to {new}: {reason} {failed[0].get('detail', '')}".strip())
    return JSONResponse({"subject": new, "renamed_from": person, "replicas": len(events)})


def _when(text: str | None, now: float) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        when = parse_when(text.strip(), now)
    except ConfigError as exc:
        raise ApiError("invalid", str(exc)) from exc
    if not math.isfinite(when):
        raise ApiError("invalid", f"time {text!r} is not finite")
    return when


def _limit(text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= PAGE_LIMIT:
        raise ApiError("invalid", f"limit must be 1..{PAGE_LIMIT}")
    return int(text)


def _cursor(text: str) -> tuple[float, set[tuple[str, int]]]:
    """(ts, keys already returned at that ts) of a ``next_cursor``."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode() + b"=="))
        return float(data["ts"]), {(str(node), int(seq)) for node, seq in data["seen"]}
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ApiError("invalid", "cursor: not a next_cursor this API returned") from exc


def _next_cursor(rows: list[dict[str, Any]]) -> str:
    last = rows[-1]["ts"]
    seen = [[r["node"], r["seq"]] for r in rows if r["ts"] == last]
    return base64.urlsafe_b64encode(json.dumps({"ts": last, "seen": seen}).encode()).decode().rstrip("=")


@needs("read", ("person", "node", "since", "until", "limit", "cursor"))
async def log(request: Request, _key: ApiKey) -> Response:
    params, now = request.query_params, time.time()
    limit = _limit(params.get("limit"), 50)
    since, until = _when(params.get("since"), now), _when(params.get("until"), now)
    seen: set[tuple[str, int]] = set()
    if "cursor" in params:
        cursor_ts, seen = _cursor(params["cursor"])
        until = (
            min(until, math.nextafter(cursor_ts, math.inf))
            if until is not None
            else math.nextafter(cursor_ts, math.inf)
        )
    query = LogQuery(
        person=params.get("person") or None,
        node=params.get("node") or None,
        since=since,
        until=until,
        limit=limit + len(seen) + 1,
    )
    rows = await run_in_threadpool(api(request).gateway.log, query)
    rows = [r for r in rows if (r["node"], r["seq"]) not in seen]
    page = rows[:limit]
    more = len(rows) > limit
    return JSONResponse({"items": page, "next_cursor": _next_cursor(page) if more else None})


@needs("read")
async def nodes(request: Request, _key: ApiKey) -> Response:
    return JSONResponse({"nodes": api(request).gateway.feeds.node_views()})


@needs("read", ("all", "node", "limit"))
async def alerts(request: Request, _key: ApiKey) -> Response:
    params = request.query_params
    show_all = params.get("all", "false")
    if show_all not in ("true", "false"):
        raise ApiError("invalid", "all must be true or false")
    limit = _limit(params.get("limit"), 100)
    found = await run_in_threadpool(api(request).gateway.alerts, limit, show_all == "false", params.get("node"))
    return JSONResponse({"alerts": found})


@needs("read")
async def acknowledge(request: Request, key: ApiKey) -> Response:
    alert_id = request.path_params["id"][:256]
    if not await run_in_threadpool(api(request).gateway.acknowledge, alert_id, f"api:{key.name}"):
        raise ApiError("not-found", f"no unacknowledged alert {alert_id!r}")
    return JSONResponse({"id": alert_id, "acknowledged": True})


@needs("read")
async def thresholds(request: Request, _key: ApiKey) -> Response:
    report = api(request).gateway.feeds.thresholds
    if report is None:
        raise ApiError("not-found", "no threshold statistics retained yet (is 'alert-service run stats' running?)")
    return JSONResponse(report)


async def openapi(request: Request) -> Response:
    return JSONResponse(api(request).document)


def api_routes() -> list[BaseRoute]:
    return [
        Route("/recognize", recognize, methods=["POST"]),
        Route("/subjects", subjects, methods=["GET"]),
        Route("/subjects/{name}/photos", add_photos, methods=["POST"]),
        Route("/subjects/{name}", delete_subject, methods=["DELETE"]),
        Route("/subjects/{name}", rename_subject, methods=["PATCH"]),
        Route("/log", log, methods=["GET"]),
        Route("/nodes", nodes, methods=["GET"]),
        Route("/alerts", alerts, methods=["GET"]),
        Route("/alerts/{id}/ack", acknowledge, methods=["POST"]),
        Route("/stats/thresholds", thresholds, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
