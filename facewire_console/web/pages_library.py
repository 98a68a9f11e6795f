"""Dashboard pages of the face library: people, enrol, forget, rename, verdicts on results, unknowns, thresholds."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from alert_service.store_factory import open_result_log
from classifier_service.gallery.client import GalleryTimeout
from facewire.errors import FacewireError, SchemaError
from facewire_console.web.http import FORM_BYTES, checked_form, dashboard, log_database, login_required, refuse, render
from facewire_console.web.library import PhotoOutcome, UploadRefused, person_name, prepare_photo, valid_result


def _last_seen(request: Request, people: list[str]) -> dict[str, Any]:
    database = log_database(dashboard(request).settings)
    if database is None:
        return {}
    store = open_result_log(database)
    try:
        return {person: store.last_seen(person) for person in people}
    finally:
        store.close()


async def _library(request: Request, status_code: int = 200, **context: Any) -> Response:
    """The library page: people with counts, thumbnails and last sighting (plus whatever ``context`` adds)."""
    library = dashboard(request).library
    try:
        people = await run_in_threadpool(library.people)
        error = None
    except (GalleryTimeout, FacewireError) as exc:
        people, error = {}, f"no classifier answered ({exc})"
    seen = await run_in_threadpool(_last_seen, request, list(people))
    entries = [
        {"name": name, "embeddings": count, "thumbnails": library.thumbnails(name), "last_seen": seen.get(name)}
        for name, count in people.items()
    ]
    context.setdefault("error", error)
    return render(request, "library.html", status_code=status_code, people=entries, **context)


@login_required
async def library_page(request: Request) -> Response:
    return await _library(request)


@login_required
async def enroll(request: Request) -> Response:
    """Upload photos of one person: each is checked here (type, size), then by the classifiers (face quality)."""
    web = dashboard(request).settings.web
    form = await checked_form(request, web.max_photos * web.max_photo_bytes + FORM_BYTES, max_files=web.max_photos)
    if isinstance(form, Response):
        return form
    try:
        person = person_name(str(form.get("person", "")))
    except UploadRefused as exc:
        return await _library(request, 422, error=str(exc))
    outcomes: list[PhotoOutcome] = []
    ready: list[tuple[str, bytes]] = []
    for upload in form.getlist("photos"):
        if not isinstance(upload, UploadFile):
            continue
        name = (upload.filename or "upload")[:120]
        data = await upload.read(web.max_photo_bytes + 1)
        try:
            ready.append((name, await run_in_threadpool(prepare_photo, name, data, web.max_photo_bytes)))
        except UploadRefused as exc:
            outcomes.append(PhotoOutcome(name, False, str(exc)))
    await form.close()
    if not ready and not outcomes:
        return await _library(request, 422, error="no photo was uploaded")
    if ready:
        try:
            user = str(request.session["user"])
            outcomes += await run_in_threadpool(dashboard(request).library.enroll, person, ready, user)
        except FacewireError as exc:
            return await _library(request, 503, error=f"enrolment failed: {exc}")
    accepted = sum(o.accepted for o in outcomes)
    return await _library(request, 200 if accepted else 422, person=person, outcomes=outcomes, accepted=accepted)


async def _gallery_command(request: Request, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    try:
        user = str(request.session["user"])
        return await run_in_threadpool(dashboard(request).library.command, body, user), None
    except GalleryTimeout as exc:
        return [], f"no classifier confirmed it: {exc}"
    except (FacewireError, SchemaError) as exc:
        return [], str(exc)


@login_required
async def forget(request: Request) -> Response:
    """Forget a person everywhere (the gallery's erasure); the typed name is the confirmation."""
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    person, typed = str(form.get("person", "")), str(form.get("confirm", "")).strip()
    if not person or typed != person:
        return await _library(request, 400, error=f"to forget {person!r}, type the name exactly to confirm")
    events, error = await _gallery_command(request, {"op": "forget", "person": person})
    if error:
        return await _library(request, 503, error=error)
    dashboard(request).library.erase_thumbnails(person)
    removed = events[0].get("removed", {}) if events else {}
    return await _library(request, notice=f"forgot {person}: {removed}")


@login_required
async def rename(request: Request) -> Response:
    """Rename a person on every replica; refused (with the reason) if the new name is already enrolled."""
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    try:
        person, new = person_name(str(form.get("person", ""))), person_name(str(form.get("to", "")))
    except UploadRefused as exc:
        return await _library(request, 422, error=str(exc))
    if new == person:
        return await _library(request, 422, error=f"{person} already has that name")
    events, error = await _gallery_command(request, {"op": "rename", "person": person, "to": new})
    if error:
        return await _library(request, 503, error=error)
    refused = [e for e in events if e.get("event") == "error"]
    if refused:
        reason = f"{refused[0].get('reason')}: {refused[0].get('detail', '')}".rstrip(": ")
        return await _library(request, 409, error=f"cannot rename {person} to {new} ({reason})")
    dashboard(request).library.move_thumbnails(person, new)
    return await _library(request, notice=f"renamed {person} to {new}")


@login_required
async def photo(request: Request) -> Response:
    path = dashboard(request).library.thumbnail_path(request.path_params["person"], request.path_params["name"])
    if path is None:
        return refuse(request, 404, "no such photo")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@login_required
async def verdict(request: Request) -> Response:
    """Mark a result as wrong (reject) or as another person (relabel): gallery commands the classifiers apply."""
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    action = str(form.get("action", ""))
    try:
        result = valid_result(str(form.get("result", "")))
        body: dict[str, Any] = {"op": "reject" if action == "reject" else "relabel", "result": result}
        if body["op"] == "relabel":
            body["person"] = person_name(str(form.get("person", "")))
    except UploadRefused as exc:
        return refuse(request, 400, str(exc))
    events, error = await _gallery_command(request, body)
    if error:
        return refuse(request, 503, error)
    database = log_database(dashboard(request).settings)
    if body["op"] == "relabel" and database is not None:
        node, _, seq = result.partition("/")
        store = open_result_log(database)
        try:
            await run_in_threadpool(store.confirm, node, int(seq), body["person"], time.time())
        finally:
            store.close()
    kinds = ", ".join(str(e.get("event")) for e in events)
    return render(request, "message.html", title="Done", message=f"{body['op']} {result}: {kinds}", back="/log")


@login_required
async def unknowns_page(request: Request) -> Response:
    try:
        clusters = await run_in_threadpool(dashboard(request).library.unknowns)
        error = None
    except FacewireError as exc:
        clusters, error = [], f"no classifier answered ({exc})"
    faces = dashboard(request).hub.unknown_faces
    for cluster in clusters:
        cluster["faces"] = [key for key in cluster.get("members", []) if faces.path(str(key)) is not None]
    return render(request, "unknowns.html", clusters=clusters, error=error, now=time.time())


@login_required
async def name_cluster(request: Request) -> Response:
    form = await checked_form(request, FORM_BYTES)
    if isinstance(form, Response):
        return form
    try:
        person = person_name(str(form.get("person", "")))
    except UploadRefused as exc:
        return refuse(request, 400, str(exc))
    body = {"op": "name-cluster", "cluster": str(form.get("cluster", ""))[:128], "person": person}
    _events, error = await _gallery_command(request, body)
    if error:
        return refuse(request, 503, error)
    dashboard(request).hub.unknown_faces.erase([str(key)[:96] for key in form.getlist("face")][:64])
    return RedirectResponse("/library", status_code=303)


@login_required
async def unknown_face(request: Request) -> Response:
    key = f"{request.path_params['node']}/{request.path_params['seq']}"
    path = dashboard(request).hub.unknown_faces.path(key)
    if path is None:
        return refuse(request, 404, "no such thumbnail")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@login_required
async def thresholds(request: Request) -> Response:
    state = dashboard(request).hub.state
    report = state.thresholds
    wire = json.loads(report.to_json()) if report is not None else None  # the charts read the published JSON
    return render(request, "thresholds.html", stats=report, stats_wire=wire, summary=state.snapshot()["thresholds"])


def library_routes() -> list[BaseRoute]:
    return [
        Route("/library", library_page),
        Route("/library/enroll", enroll, methods=["POST"]),
        Route("/library/forget", forget, methods=["POST"]),
        Route("/library/rename", rename, methods=["POST"]),
        Route("/photos/{person}/{name}", photo),
        Route("/log/verdict", verdict, methods=["POST"]),
        Route("/unknowns", unknowns_page),
        Route("/unknowns/name", name_cluster, methods=["POST"]),
        Route("/unknown-faces/{node}/{seq}", unknown_face),
        Route("/thresholds", thresholds),
    ]
