"""Dashboard pages: login, live view (server-sent events), detection log with CSV export, alerts."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from itertools import islice
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from alert_service.store import LogQuery, LogRow
from alert_service.store_factory import open_alert_store, open_result_log
from alert_service.views_log import export, parse_when
from facewire.errors import ConfigError
from facewire_console.web.auth import login_keys, new_csrf_token
from facewire_console.web.http import (
    FORM_BYTES,
    alert_database,
    checked_form,
    client_address,
    dashboard,
    log_database,
    login_required,
    refuse,
    render,
)
from facewire_console.web.live import GOODBYE

PAGE_ROWS = 50
CSV_MAX_ROWS = 100_000
KEEPALIVE = 15.0


def local_target(target: object, default: str = "/") -> str:
    """``target`` if it is a path on this site (no scheme, no //host), else ``default``."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


async def login_page(request: Request) -> Response:
    return render(request, "login.html", next=local_target(request.query_params.get("next")))


async def login(request: Request) -> Response:
    board = dashboard(request)
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    name, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:1024]
    target = local_target(form.get("next"))
    board.unlocks.apply(board.limiter)
    keys = login_keys(name, client_address(request))
    wait = board.limiter.retry_after(keys)
    if wait > 0:
        message = f"too many failed logins: try again in {wait:.0f} s"
        return render(request, "login.html", status_code=429, error=message, next=target)
    if not await run_in_threadpool(board.users.verify, name, password):
        board.limiter.failed(keys)
        return render(request, "login.html", status_code=401, error="wrong user name or password", next=target)
    board.limiter.succeeded(keys)
    board.sessions.revoke(request.session.get("sid"))
    request.session.clear()
    sid = board.sessions.open(name)
    request.session.update({"user": name, "sid": sid, "csrf": new_csrf_token(), "since": time.time()})
    return RedirectResponse(target, status_code=303)


@login_required
async def logout(request: Request) -> Response:
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    dashboard(request).sessions.revoke(request.session.get("sid"))  # the old cookie no longer logs in
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _open_alerts(request: Request, unacked_only: bool, limit: int = 100) -> list[Any] | None:
    database = alert_database(dashboard(request).settings)
    if database is None:
        return None
    store = open_alert_store(database)
    try:
        return store.alerts(limit, unacked_only=unacked_only)
    finally:
        store.close()


@login_required
async def live(request: Request) -> Response:
    alerts = await run_in_threadpool(_open_alerts, request, True, 20)
    return render(request, "live.html", alerts=alerts or [], has_alert_db=alerts is not None)


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@login_required
async def events(request: Request) -> Response:
    """Server-sent events: a snapshot, then every result, alert and node change as it arrives."""
    hub = dashboard(request).hub
    queue = hub.subscribe()

    async def stream() -> AsyncIterator[str]:
        try:
            yield _sse("snapshot", hub.snapshot())
            while True:
                try:
                    kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if (kind, data) == GOODBYE:  # the server is stopping
                    return
                yield _sse(kind, data)
        finally:
            hub.unsubscribe(queue)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@login_required
async def alerts_page(request: Request) -> Response:
    show_all = request.query_params.get("all") == "1"
    alerts = await run_in_threadpool(_open_alerts, request, not show_all, 200)
    return render(request, "alerts.html", alerts=alerts or [], has_alert_db=alerts is not None, show_all=show_all)


@login_required
async def acknowledge(request: Request) -> Response:
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    board, user = dashboard(request), str(request.session["user"])
    keys = [str(key)[:256] for key in form.getlist("id")]
    database = alert_database(board.settings)
    if not keys or database is None:
        return refuse(request, 400, "no alert to acknowledge")

    def ack() -> None:
        store = open_alert_store(database)
        try:
            for key in keys:
                store.acknowledge(key, f"web:{user}", time.time())
        finally:
            store.close()

    await run_in_threadpool(ack)
    return RedirectResponse(local_target(form.get("back"), "/alerts"), status_code=303)


def log_query(request: Request, limit: int) -> LogQuery:
    """The log filters of the query string (ConfigError for a time that cannot be read)."""
    params, now = request.query_params, time.time()
    since, until = params.get("since", "").strip(), params.get("until", "").strip()
    return LogQuery(
        person=params.get("person", "").strip() or None,
        node=params.get("node", "").strip() or None,
        since=parse_when(since, now) if since else None,
        until=parse_when(until, now) if until else None,
        unknown_only=params.get("unknown") == "1",
        limit=limit,
    )


def _rows(request: Request, query: LogQuery) -> list[LogRow] | None:
    database = log_database(dashboard(request).settings)
    if database is None:
        return None
    store = open_result_log(database)
    try:
        return list(islice(store.query(query), query.limit))
    finally:
        store.close()


@login_required
async def log_page(request: Request) -> Response:
    raw_page = request.query_params.get("page", "0")
    page = min(int(raw_page), 1000) if raw_page.isdigit() else 0
    try:
        query = log_query(request, (page + 1) * PAGE_ROWS + 1)
    except ConfigError as exc:
        return render(request, "log.html", status_code=400, error=str(exc), rows=[], page=0, more=False, query={})
    rows = await run_in_threadpool(_rows, request, query)
    shown = (rows or [])[page * PAGE_ROWS : (page + 1) * PAGE_ROWS]
    return render(
        request,
        "log.html",
        rows=shown,
        page=page,
        more=rows is not None and len(rows) > (page + 1) * PAGE_ROWS,
        query=dict(request.query_params),
        has_log=rows is not None,
    )


@login_required
async def log_csv(request: Request) -> Response:
    try:
        query = log_query(request, CSV_MAX_ROWS)
    except ConfigError as exc:
        return refuse(request, 400, str(exc))
    rows = await run_in_threadpool(_rows, request, query)
    if rows is None:
        return refuse(request, 404, "no detection log yet (start: alert-service run recorder)")
    out = io.StringIO()
    export(rows, "csv", out)
    headers = {"Content-Disposition": 'attachment; filename="facewire-log.csv"'}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


async def health(_request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


def routes(static: StaticFiles) -> list[BaseRoute]:
    from facewire_console.web.pages_library import library_routes

    return [
        Route("/", live),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
        Route("/alerts", alerts_page),
        Route("/alerts/ack", acknowledge, methods=["POST"]),
        Route("/log", log_page),
        Route("/log.csv", log_csv),
        Route("/healthz", health),
        *library_routes(),
        Mount("/static", app=static, name="static"),
    ]
