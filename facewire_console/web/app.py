"""The dashboard's ASGI application: Starlette routes, signed session cookies, login and CSRF guards.

Every page needs a login. Every POST (forms and uploads alike) must carry the
session's CSRF token and a Content-Length within the limit of its route;
responses carry a strict Content-Security-Policy (scripts and styles from
``/static`` only). Handlers live in :mod:`facewire_console.web.pages`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from alert_service.views_log import clock
from facewire.config import Settings
from facewire.presentation import result_style
from facewire_console.api.app import PREFIX, api_lifespan, create_api
from facewire_console.web.auth import LoginLimiter, SessionRegistry, UnlockRequests, UserStore, session_secret
from facewire_console.web.http import HERE, Dashboard, SecurityHeaders, trusted_networks
from facewire_console.web.library import Library
from facewire_console.web.live import LiveHub
from facewire_console.web.pages import routes


def _page_url(query: dict[str, str], page: int) -> str:
    return urllib.parse.urlencode({**query, "page": page})


def create_app(settings: Settings) -> Starlette:
    """The dashboard application for ``settings`` (the MQTT subscription starts with the app)."""
    hub = LiveHub(settings)
    library = Library(settings)
    hub.gallery_listeners.append(library.on_gallery_event)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(clock=clock, style=lambda row: result_style(row.as_result()), pageurl=_page_url)
    board = Dashboard(
        settings=settings,
        users=UserStore(settings.web.users_file),
        limiter=LoginLimiter(settings.web.login_attempts, settings.web.login_window),
        hub=hub,
        library=library,
        templates=templates,
        sessions=SessionRegistry(settings.web.session_hours * 3600),
        unlocks=UnlockRequests(settings.web.data_dir / "unlock"),
        proxies=trusted_networks(settings.web.trusted_proxies),
    )

    api = create_api(settings)  # the REST API (API keys, no session) under /api/v1

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            async with api_lifespan(api):
                yield
        finally:
            await hub.stop()

    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(settings.web.secret_file),
            session_cookie="facewire_session",
            max_age=int(settings.web.session_hours * 3600),
            same_site="strict",
            https_only=settings.web.cookie_secure,
        ),
    ]
    app_routes = [Mount(PREFIX, app=api), *routes(StaticFiles(directory=HERE / "static"))]
    app = Starlette(routes=app_routes, middleware=middleware, lifespan=lifespan)
    app.state.dashboard = board
    return app
