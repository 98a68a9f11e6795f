"""What every dashboard handler shares: the Dashboard state, rendering, refusals, forms, login and headers."""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facewire.config import Settings
from facewire.errors import ConfigError
from facewire_console.web.auth import (
    LoginLimiter,
    SessionRegistry,
    UnlockRequests,
    UserStore,
    csrf_matches,
    new_csrf_token,
)
from facewire_console.web.library import Library
from facewire_console.web.live import LiveHub

HERE = Path(__file__).resolve().parent
FORM_BYTES = 64 * 1024
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

Handler = Callable[[Request], Awaitable[Response]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Dashboard:
    """What every handler needs: settings, accounts, the live feed, the library, templates."""

    settings: Settings
    users: UserStore
    limiter: LoginLimiter
    hub: LiveHub
    library: Library
    templates: Jinja2Templates
    sessions: SessionRegistry
    unlocks: UnlockRequests
    proxies: list[Network]


def log_database(settings: Settings) -> Path | str | None:
    """The detection log the recorder writes (a postgresql:// URL, or a SQLite file once it exists)."""
    target = settings.recorder.database_url or settings.recorder.database
    return target if isinstance(target, str) or target.exists() else None


def alert_database(settings: Settings) -> Path | str | None:
    """The alert store the alert service writes (a postgresql:// URL, or a SQLite file once it exists)."""
    target = settings.alerts.database_url or settings.alerts.database
    return target if isinstance(target, str) or target.exists() else None


def trusted_networks(entries: list[str]) -> list[Network]:
    """web.trusted_proxies as networks; a ConfigError names an entry that is not an address or CIDR."""
    try:
        return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]
    except ValueError as exc:
        raise ConfigError(f"web.trusted_proxies: {exc}") from exc


def client_address(request: Request) -> str:
    """The client's address: the peer's, or behind a trusted reverse proxy the last X-Forwarded-For hop that
    is not itself a trusted proxy (anything a client writes to the left of that is ignored)."""
    proxies = dashboard(request).proxies
    hops = [request.client.host if request.client else "?"]
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()] + hops
    while len(hops) > 1 and _trusted(hops[-1], proxies):
        hops.pop()
    return hops[-1]


def _trusted(address: str, proxies: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def dashboard(request: Request) -> Dashboard:
    board: Dashboard = request.app.state.dashboard
    return board


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every HTTP response (streams untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send if scope["type"] != "http" else with_headers)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = new_csrf_token()
        request.session["csrf"] = token
    return token


def render(request: Request, name: str, status_code: int = 200, **context: object) -> Response:
    board = dashboard(request)
    context = {"user": request.session.get("user"), "csrf": csrf_token(request), "path": request.url.path, **context}
    return board.templates.TemplateResponse(request, name, context, status_code=status_code)


def refuse(request: Request, status_code: int, message: str) -> Response:
    """An error page (HTML for browsers, plain text for other clients)."""
    if "text/html" in request.headers.get("accept", ""):
        return render(request, "message.html", status_code=status_code, title="Refused", message=message)
    return PlainTextResponse(message + "\n", status_code=status_code)


async def checked_form(request: Request, max_bytes: int, max_files: int = 0) -> FormData | Response:
    """The POSTed form if its size is declared and within ``max_bytes`` and its CSRF token matches."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return refuse(request, 411, "a Content-Length is required")
    if int(declared) > max_bytes:
        return refuse(request, 413, f"request of {int(declared)} bytes is larger than the limit of {max_bytes} bytes")
    form = await request.form(max_files=max_files, max_fields=50)
    if not csrf_matches(request.session.get("csrf"), form.get("csrf")):
        await form.close()
        return refuse(request, 403, "CSRF token missing or wrong: reload the page and try again")
    return form


def login_required(func: Handler) -> Handler:
    """Refuse requests without a logged-in session (browsers are sent to the login page)."""

    @functools.wraps(func)
    async def guarded(request: Request) -> Response:
        session = request.session
        if not dashboard(request).sessions.active(session.get("sid"), session.get("user")):
            session.clear()  # signed but revoked (logged out) or from before a restart: not a login
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                target = urllib.parse.quote(request.url.path)
                return RedirectResponse(f"/login?next={target}", status_code=303)
            return PlainTextResponse("login required\n", status_code=401)
        return await func(request)

    return guarded
