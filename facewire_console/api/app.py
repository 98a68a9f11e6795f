"""The API's ASGI application: ``/api/v1`` routes over one broker connection (mounted by ``facewire web`` too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from facewire.config import Settings
from facewire_console.api.errors import ApiError
from facewire_console.api.feeds import Feeds
from facewire_console.api.gateway import Gateway
from facewire_console.api.keys import KeyStore, RateLimiter, keys_file
from facewire_console.api.openapi import document
from facewire_console.api.routes import Api, api_routes

PREFIX = "/api/v1"


async def not_found(_request: Request, _exc: Exception) -> Response:
    return ApiError("not-found", "no such endpoint").response()


def create_api(settings: Settings) -> Starlette:
    """The API as an ASGI app whose routes start at ``/`` (mount it at PREFIX); ``app.state.feeds`` must be
    started and stopped by whoever runs it (:func:`api_lifespan`)."""
    feeds = Feeds(settings)
    state = Api(
        keys=KeyStore(keys_file(settings)),
        limiter=RateLimiter(),
        gateway=Gateway(settings, feeds),
        document=document(),
        max_photo_bytes=settings.web.max_photo_bytes,
    )
    app = Starlette(routes=api_routes(), exception_handlers={404: not_found, 405: method_not_allowed})
    app.state.api = state
    app.state.feeds = feeds
    return app


async def method_not_allowed(_request: Request, exc: Exception) -> Response:
    headers = dict(getattr(exc, "headers", None) or {})
    return ApiError("method-not-allowed", "this endpoint does not take that method", headers).response()


@asynccontextmanager
async def api_lifespan(api: Starlette) -> AsyncIterator[None]:
    """The broker connection of ``api`` for as long as the server runs."""
    api.state.feeds.start()
    try:
        yield
    finally:
        api.state.feeds.stop()


def standalone(settings: Settings) -> Starlette:
    """The API on its own (``facewire api serve``): everything under PREFIX."""
    api = create_api(settings)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with api_lifespan(api):
            yield

    return Starlette(routes=[Mount(PREFIX, app=api)], lifespan=lifespan, exception_handlers={404: not_found})
